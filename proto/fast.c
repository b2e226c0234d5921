/* fast.c - the allocation-free fast path of proto_parse().
 *
 * Almost every message a client sends is a plain track event: a few
 * short strings with no escapes and a small payload of strings and
 * integers. For those, building a jansson tree (a malloc per value, a
 * hash table per object) costs several times more than the whole rest
 * of the daemon's work on the event. This file handles exactly that
 * shape in one pass over the bytes: a strict RFC 8259 grammar check,
 * UTF-8 validation, depth and duplicate-key checks, and spans of the
 * top-level members; then it writes the upstream event straight from
 * those spans. Without escapes and with only short integers, the
 * compact form of a value is its own bytes minus the whitespace between
 * tokens, which is what makes the copy exact. Anything else - every
 * error, every escape, reals, long or negative-zero integers, ops,
 * numeric occurred_at, unknown keys, big objects - is declined untouched
 * and left to the slow path, which owns every rejection reason and
 * every normalisation. The rule is one-sided on purpose: declining is
 * always safe, accepting must give the slow path's bytes exactly, and
 * tests/unit/test-proto-fast.c checks that differentially.
 */
#include "parse-internal.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Longest integer literal taken (digits, sign aside): 18 digits always
 * fit int64, so the slow path reads it back to the same digits. */
#define FAST_MAX_INT_DIGITS 18
/* Keys per nested object checked for duplicates (pairwise), and keys
 * remembered over all open objects; more of either is declined. */
#define FAST_MAX_KEYS 32
#define FAST_LIVE_KEYS 256
/* More than the constant text of an event (125 bytes for identify). */
#define FAST_FIXED_BYTES 160

/* The top-level members a track or identify event may carry. */
enum fast_field {
        FF_TYPE,
        FF_USER_ID,
        FF_EVENT_TYPE,
        FF_OCCURRED_AT,
        FF_PAYLOAD,
        FF_TRAITS,
        FF_EVENT_ID,
        FF_COUNT,
        FF_OTHER = FF_COUNT, /* "op", an unknown key: declined */
};

#define FBIT(f) (1u << (f))
#define TRACK_MEMBERS                                                                              \
        (FBIT(FF_TYPE) | FBIT(FF_USER_ID) | FBIT(FF_EVENT_TYPE) | FBIT(FF_OCCURRED_AT) |           \
         FBIT(FF_PAYLOAD) | FBIT(FF_EVENT_ID))
#define IDENTIFY_MEMBERS                                                                           \
        (FBIT(FF_TYPE) | FBIT(FF_USER_ID) | FBIT(FF_TRAITS) | FBIT(FF_OCCURRED_AT) |               \
         FBIT(FF_EVENT_ID))

struct span {
        const char *p;
        size_t n;
};

struct scan {
        const char *p, *end;
        bool ws; /* whitespace skipped since last cleared */
        struct span keys[FAST_LIVE_KEYS];
};

struct members {
        unsigned seen;
        struct span v[FF_COUNT]; /* strings without quotes; objects whole */
        bool obj_ws;             /* the payload/traits has inner whitespace */
};

static inline bool is_ws(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static inline void skip_ws(struct scan *s)
{
        while (s->p < s->end && is_ws(*s->p)) {
                s->p++;
                s->ws = true;
        }
}

/* A mask with the high bit set in each byte of w that the string
 * scanner must look at (below 0x20, '"', '\\', 0x80 and above), and
 * possibly in bytes after such a byte: the usual "has zero byte" tricks
 * (borrows only run upwards from a true hit), so it is exact as a
 * yes/no and its lowest set bit marks the first such byte. */
static inline uint64_t word_special(uint64_t w)
{
        const uint64_t ones = UINT64_C(0x0101010101010101);
        const uint64_t high = UINT64_C(0x8080808080808080);
        uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');

        return ((((w - ones * 0x20) | (q - ones) | (b - ones)) & ~w) | w) & high;
}

/* Bytes before the first marked one: on little-endian machines the
 * first byte in memory is the lowest; elsewhere just say none. */
static inline size_t plain_prefix(uint64_t mask)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        return (size_t)__builtin_ctzll(mask) / 8;
#else
        (void)mask;
        return 0;
#endif
}

/* Scan a string whose opening quote was consumed; on success s->p is
 * past the closing quote and *ret its contents. Escapes and control
 * characters are declined. Eight bytes at a time while they are plain
 * ASCII, which most strings are. */
static bool scan_string(struct scan *s, struct span *ret)
{
        const unsigned char *p = (const unsigned char *)s->p;
        const unsigned char *end = (const unsigned char *)s->end;

        while (p < end) {
                unsigned char c;
                uint64_t w, mask;

                if (end - p >= 8) {
                        memcpy(&w, p, 8);
                        mask = word_special(w);
                        if (!mask) {
                                p += 8;
                                continue;
                        }
                        p += plain_prefix(mask);
                }
                c = *p;
                if (c == '"') {
                        ret->p = s->p;
                        ret->n = (size_t)(p - (const unsigned char *)s->p);
                        s->p = (const char *)p + 1;
                        return true;
                }
                if (c < 0x20 || c == '\\')
                        return false;
                if (c < 0x80) {
                        p++;
                } else {
                        size_t n = proto_utf8_seq(p, end);

                        if (!n)
                                return false;
                        p += n;
                }
        }
        return false;
}

/* An integer of at most FAST_MAX_INT_DIGITS digits, first char c
 * already consumed; "-0", leading zeros, fractions and exponents are
 * declined. */
static bool scan_int(struct scan *s, char c)
{
        const char *first = s->p - 1; /* the first digit */

        if (c == '-') {
                if (s->p >= s->end || *s->p < '1' || *s->p > '9')
                        return false;
                first = s->p;
        }
        if (*first != '0') /* a leading zero is the whole integer */
                while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
                        s->p++;
        if (s->p - first > FAST_MAX_INT_DIGITS)
                return false;
        if (s->p < s->end &&
            ((*s->p >= '0' && *s->p <= '9') || *s->p == '.' || *s->p == 'e' || *s->p == 'E'))
                return false;
        return true;
}

static bool scan_word(struct scan *s, const char *rest, size_t n)
{
        if ((size_t)(s->end - s->p) < n || memcmp(s->p, rest, n) != 0)
                return false;
        s->p += n;
        return true;
}

/* A scalar whose first char c was consumed. */
static bool scan_scalar(struct scan *s, char c)
{
        struct span str;

        switch (c) {
        case '"': return scan_string(s, &str);
        case 't': return scan_word(s, "rue", 3);
        case 'f': return scan_word(s, "alse", 4);
        case 'n': return scan_word(s, "ull", 3);
        default:
                if (c == '-' || (c >= '0' && c <= '9'))
                        return scan_int(s, c);
                return false;
        }
}

/* A key (opening quote consumed) of the object whose keys start at
 * s->keys[first]: declined when it repeats one of them, so the slow path
 * reports the duplicate, or when there are too many to compare. */
static bool scan_key(struct scan *s, unsigned first, unsigned *nkeys)
{
        struct span k;

        if (!scan_string(s, &k))
                return false;
        if (*nkeys - first >= FAST_MAX_KEYS || *nkeys >= FAST_LIVE_KEYS)
                return false;
        for (unsigned i = first; i < *nkeys; i++)
                if (s->keys[i].n == k.n && memcmp(s->keys[i].p, k.p, k.n) == 0)
                        return false;
        s->keys[(*nkeys)++] = k;
        return true;
}

/* Validate one complete JSON value inside a container at nesting level
 * `depth` (the message object is level 1), without recursion: a bit per
 * open level says object or array, and each open object's keys sit in
 * s->keys from base[level]. Every iteration consumes at least one byte,
 * so the loop ends within the input. Long (77 lines) on purpose: one
 * state machine whose states share level, base and nkeys, run on every
 * byte of every payload on the daemon's per-event hot path. */
static bool scan_value(struct scan *s, unsigned depth)
{
        enum { S_VALUE, S_VALUE_OR_CLOSE, S_KEY, S_KEY_OR_CLOSE, S_NEXT } st;
        unsigned base[PROTO_MAX_DEPTH + 1];
        uint64_t is_obj = 0;
        unsigned level = 0, nkeys = 0;

        st = S_VALUE;
        while (s->p < s->end) {
                bool complete = false, obj;
                char c;

                skip_ws(s);
                if (s->p >= s->end)
                        return false;
                c = *s->p++;
                switch (st) {
                case S_VALUE_OR_CLOSE:
                case S_VALUE:
                        if (c == ']' && st == S_VALUE_OR_CLOSE) {
                                level--;
                                complete = true;
                        } else if (c == '{' || c == '[') {
                                if (depth + level + 1 > PROTO_MAX_DEPTH)
                                        return false;
                                level++;
                                if (c == '{') {
                                        is_obj |= UINT64_C(1) << level;
                                        base[level] = nkeys;
                                        st = S_KEY_OR_CLOSE;
                                } else {
                                        is_obj &= ~(UINT64_C(1) << level);
                                        st = S_VALUE_OR_CLOSE;
                                }
                        } else if (scan_scalar(s, c)) {
                                complete = true;
                        } else {
                                return false;
                        }
                        break;
                case S_KEY_OR_CLOSE:
                case S_KEY:
                        if (c == '}' && st == S_KEY_OR_CLOSE) {
                                nkeys = base[level];
                                level--;
                                complete = true;
                                break;
                        }
                        if (c != '"' || !scan_key(s, base[level], &nkeys))
                                return false;
                        skip_ws(s);
                        if (s->p >= s->end || *s->p != ':')
                                return false;
                        s->p++;
                        st = S_VALUE;
                        break;
                case S_NEXT:
                        obj = is_obj & (UINT64_C(1) << level);
                        if (c == ',') {
                                st = obj ? S_KEY : S_VALUE;
                                break;
                        }
                        if (c != (obj ? '}' : ']'))
                                return false;
                        if (obj)
                                nkeys = base[level];
                        level--;
                        complete = true;
                        break;
                }
                if (complete) {
                        if (level == 0)
                                return true;
                        st = S_NEXT;
                }
        }
        return false;
}

static enum fast_field classify(const struct span *k)
{
        switch (k->n) {
        case 4:
                if (!memcmp(k->p, "type", 4))
                        return FF_TYPE;
                break;
        case 6:
                if (!memcmp(k->p, "traits", 6))
                        return FF_TRAITS;
                break;
        case 7:
                if (!memcmp(k->p, "user_id", 7))
                        return FF_USER_ID;
                if (!memcmp(k->p, "payload", 7))
                        return FF_PAYLOAD;
                break;
        case 8:
                if (!memcmp(k->p, "event_id", 8))
                        return FF_EVENT_ID;
                break;
        case 10:
                if (!memcmp(k->p, "event_type", 10))
                        return FF_EVENT_TYPE;
                break;
        case 11:
                if (!memcmp(k->p, "occurred_at", 11))
                        return FF_OCCURRED_AT;
                break;
        default: break;
        }
        return FF_OTHER;
}

/* The message object: each member once, strings for the string fields
 * and an object for payload/traits; nothing may follow it. */
static bool scan_message(struct scan *s, struct members *m)
{
        skip_ws(s);
        if (s->p >= s->end || *s->p != '{')
                return false;
        s->p++;
        /* Every member consumes bytes, so this ends within the input. */
        while (s->p < s->end) {
                struct span key;
                enum fast_field f;

                skip_ws(s);
                if (s->p >= s->end || *s->p != '"')
                        return false;
                s->p++;
                if (!scan_string(s, &key))
                        return false;
                f = classify(&key);
                if (f == FF_OTHER || (m->seen & FBIT(f)))
                        return false;
                m->seen |= FBIT(f);
                skip_ws(s);
                if (s->p >= s->end || *s->p != ':')
                        return false;
                s->p++;
                skip_ws(s);
                if (s->p >= s->end)
                        return false;
                if (f == FF_PAYLOAD || f == FF_TRAITS) {
                        if (*s->p != '{')
                                return false;
                        m->v[f].p = s->p;
                        s->ws = false;
                        if (!scan_value(s, 1))
                                return false;
                        m->v[f].n = (size_t)(s->p - m->v[f].p);
                        m->obj_ws = s->ws;
                } else {
                        if (*s->p != '"')
                                return false;
                        s->p++;
                        if (!scan_string(s, &m->v[f]))
                                return false;
                }
                skip_ws(s);
                if (s->p >= s->end)
                        return false;
                if (*s->p == '}') {
                        s->p++;
                        skip_ws(s);
                        return s->p == s->end;
                }
                if (*s->p != ',')
                        return false;
                s->p++;
        }
        return false;
}

static bool span_is(const struct span *v, const char *lit, size_t n)
{
        return v->n == n && memcmp(v->p, lit, n) == 0;
}

/* proto_time_format through a one-entry cache: the daemon stamps a
 * burst's events with one receipt time, so most calls format nothing.
 * Per thread, so callers on several threads stay independent. */
static void format_time_cached(int64_t ms, char out[PROTO_TIME_LEN + 1])
{
        static _Thread_local int64_t last_ms = INT64_MIN;
        static _Thread_local char last[PROTO_TIME_LEN + 1];

        if (ms != last_ms) {
                proto_time_format(ms, last);
                last_ms = ms;
        }
        memcpy(out, last, PROTO_TIME_LEN + 1);
}

static char *put(char *w, const void *p, size_t n)
{
        memcpy(w, p, n);
        return w + n;
}

/* Copy a validated object without the whitespace between its tokens.
 * With no escapes, every '"' opens or closes a string. */
static char *put_compact(char *w, const struct span *v)
{
        bool in_str = false;

        for (size_t i = 0; i < v->n; i++) {
                char c = v->p[i];

                if (c == '"')
                        in_str = !in_str;
                else if (!in_str && is_ws(c))
                        continue;
                *w++ = c;
        }
        return w;
}

#define LIT(s) s, sizeof(s) - 1

/* The field rules of PROTOCOL.md, each declining where the slow path
 * rejects: the type, the members its kind takes, the lengths of user_id
 * and event_type, event_id, and occurred_at (read into *at). */
static bool check_members(const struct members *m, bool *ret_identify, int64_t *at)
{
        bool identify = false;

        if (m->seen & FBIT(FF_TYPE)) {
                if (span_is(&m->v[FF_TYPE], LIT("identify")))
                        identify = true;
                else if (!span_is(&m->v[FF_TYPE], LIT("track")))
                        return false;
        }
        if (m->seen & ~(identify ? IDENTIFY_MEMBERS : TRACK_MEMBERS))
                return false;
        if (!(m->seen & FBIT(FF_USER_ID)) || m->v[FF_USER_ID].n < 1 ||
            m->v[FF_USER_ID].n > PROTO_USER_ID_MAX)
                return false;
        if (!identify && (!(m->seen & FBIT(FF_EVENT_TYPE)) || m->v[FF_EVENT_TYPE].n < 1 ||
                          m->v[FF_EVENT_TYPE].n > PROTO_EVENT_TYPE_MAX))
                return false;
        if ((m->seen & FBIT(FF_EVENT_ID)) &&
            !proto_event_id_valid(m->v[FF_EVENT_ID].p, m->v[FF_EVENT_ID].n))
                return false;
        if ((m->seen & FBIT(FF_OCCURRED_AT)) &&
            proto_time_parse(m->v[FF_OCCURRED_AT].p, m->v[FF_OCCURRED_AT].n, at) < 0)
                return false;
        *ret_identify = identify;
        return true;
}

/* Append the upstream event, the slow path's bytes exactly: one
 * reservation, then plain copies of the spans. False when out of memory,
 * which is declined too, so the slow path reports it its own way. */
static bool put_event(struct proto_buf *out, const struct members *m, bool identify, int64_t at,
                      const uint8_t rnd[16])
{
        const struct span *obj = (m->seen & FBIT(identify ? FF_TRAITS : FF_PAYLOAD))
                                         ? &m->v[identify ? FF_TRAITS : FF_PAYLOAD]
                                         : NULL;
        char idbuf[PROTO_UUID_LEN + 1], tbuf[PROTO_TIME_LEN + 1];
        size_t need = FAST_FIXED_BYTES + PROTO_EVENT_ID_MAX + m->v[FF_USER_ID].n +
                      (identify ? 0 : m->v[FF_EVENT_TYPE].n) + (obj ? obj->n : 2);
        char *w;

        if (proto_buf_reserve(out, need) < 0)
                return false;
        w = out->data + out->len;
        w = put(w, LIT("{\"event_id\":\""));
        if (m->seen & FBIT(FF_EVENT_ID)) {
                w = put(w, m->v[FF_EVENT_ID].p, m->v[FF_EVENT_ID].n);
        } else {
                proto_uuid_format(rnd, idbuf);
                w = put(w, idbuf, PROTO_UUID_LEN);
        }
        w = put(w, LIT("\",\"user_id\":\""));
        w = put(w, m->v[FF_USER_ID].p, m->v[FF_USER_ID].n);
        if (identify) {
                w = put(w, LIT("\",\"event_type\":\"context_identified"));
        } else {
                w = put(w, LIT("\",\"event_type\":\""));
                w = put(w, m->v[FF_EVENT_TYPE].p, m->v[FF_EVENT_TYPE].n);
        }
        format_time_cached(at, tbuf);
        w = put(w, LIT("\",\"occurred_at\":\""));
        w = put(w, tbuf, PROTO_TIME_LEN);
        if (identify)
                w = put(w, LIT("\",\"payload\":{\"traits\":"));
        else
                w = put(w, LIT("\",\"payload\":"));
        if (!obj)
                w = put(w, LIT("{}"));
        else if (m->obj_ws)
                w = put_compact(w, obj);
        else
                w = put(w, obj->p, obj->n);
        w = put(w, identify ? "}}" : "}", identify ? 2 : 1);
        out->len = (size_t)(w - out->data);
        return true;
}

int proto_parse_fast(const char *line, size_t len, size_t max_bytes, int64_t now_ms,
                     const uint8_t rnd[16], struct proto_buf *out, struct proto_msg *msg,
                     struct proto_error *err)
{
        struct scan s;
        struct members m;
        bool identify;
        int64_t at = now_ms;

        if (!line || !rnd || !out || !msg || len > max_bytes)
                return PROTO_FAST_UNHANDLED;
        s.p = line;
        s.end = line + len;
        m.seen = 0;
        m.obj_ws = false;
        if (!scan_message(&s, &m) || !check_members(&m, &identify, &at) ||
            !put_event(out, &m, identify, at, rnd))
                return PROTO_FAST_UNHANDLED;

        proto_msg_set_event(msg);
        if (err) {
                err->reason = PROTO_OK;
                err->detail[0] = '\0';
        }
        return 0;
}
