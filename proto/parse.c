/* parse.c - validate one local message and normalise it for upstream.
 *
 * proto_parse() is the per-event hot path of the daemon: it takes one
 * NDJSON line exactly as a client sent it, decides whether it is an op
 * or an event, rejects anything SPEC section 2 forbids with a stable
 * reason, and writes an accepted event straight into the caller's
 * buffer in the one shape the upstream takes. jansson does the JSON
 * grammar and UTF-8 checks; this file adds what jansson cannot know
 * (size and depth limits checked before jansson recurses, field rules,
 * timestamps, ids) and serialises the payload itself, so numbers come
 * out in their shortest round-trip form and nothing is allocated beyond
 * jansson's own tree. The common simple message never gets here: fast.c
 * handles it without jansson and declines the rest to proto_parse_slow().
 */
#include "parse-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Unix ms range of years 0000..9999, as in encode.c. */
#define TIME_MIN_MS INT64_C(-62167219200000)
#define TIME_MAX_MS INT64_C(253402300799999)
#define FIELD_NAME_SHOW 72 /* room for a user-chosen name in a detail */
/* How a detail shows client-chosen text (a key, a type, jansson's quote of
 * the input): printable ASCII between quotes, cut with "..." to fit. */
#define SHOWN (PROTO_PRINTABLE_QUOTED | PROTO_PRINTABLE_ASCII | PROTO_PRINTABLE_ELLIPSIS)

/* Every top-level key any message may carry; a bit each. */
enum field {
        F_OP,
        F_TYPE,
        F_USER_ID,
        F_EVENT_TYPE,
        F_OCCURRED_AT,
        F_PAYLOAD,
        F_TRAITS,
        F_EVENT_ID,
        F_TIMEOUT_MS,
        F_USER_ID_SIG,
        F_DROP_COUNT,
        F_PID,
        F_COUNT,
        F_UNKNOWN = F_COUNT,
};

#define BIT(f) (1u << (f))

static const char *const field_names[F_COUNT] = {
        [F_OP] = "op",
        [F_TYPE] = "type",
        [F_USER_ID] = "user_id",
        [F_EVENT_TYPE] = "event_type",
        [F_OCCURRED_AT] = "occurred_at",
        [F_PAYLOAD] = "payload",
        [F_TRAITS] = "traits",
        [F_EVENT_ID] = "event_id",
        [F_TIMEOUT_MS] = "timeout_ms",
        [F_USER_ID_SIG] = "user_id_sig",
        [F_DROP_COUNT] = "count",
        [F_PID] = "pid",
};

static const struct {
        const char *name;
        enum proto_op op;
        unsigned allowed;
} ops[] = {
        { "ping", PROTO_OP_PING, BIT(F_OP) },
        { "stats", PROTO_OP_STATS, BIT(F_OP) },
        { "flush", PROTO_OP_FLUSH, BIT(F_OP) | BIT(F_TIMEOUT_MS) },
        { "set_user", PROTO_OP_SET_USER, BIT(F_OP) | BIT(F_USER_ID) | BIT(F_USER_ID_SIG) },
        { "reset_session", PROTO_OP_RESET_SESSION, BIT(F_OP) },
        { "client_dropped", PROTO_OP_CLIENT_DROPPED, BIT(F_OP) | BIT(F_DROP_COUNT) | BIT(F_PID) },
};

#define TRACK_FIELDS                                                                               \
        (BIT(F_TYPE) | BIT(F_USER_ID) | BIT(F_EVENT_TYPE) | BIT(F_OCCURRED_AT) | BIT(F_PAYLOAD) |  \
         BIT(F_EVENT_ID))
#define IDENTIFY_FIELDS                                                                            \
        (BIT(F_TYPE) | BIT(F_USER_ID) | BIT(F_TRAITS) | BIT(F_OCCURRED_AT) | BIT(F_EVENT_ID))

static enum field classify(const char *key)
{
        for (int f = 0; f < F_COUNT; f++)
                if (key[0] == field_names[f][0] && !strcmp(key, field_names[f]))
                        return (enum field)f;
        return F_UNKNOWN;
}

/* ---- error details ---- */

static int fail(struct proto_error *err, enum proto_reason reason, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int fail(struct proto_error *err, enum proto_reason reason, const char *fmt, ...)
{
        va_list ap;

        if (err) {
                err->reason = reason;
                va_start(ap, fmt);
                vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
                va_end(ap);
        }
        return reason == PROTO_E_NOMEM ? -ENOMEM : -EINVAL;
}

/* ---- the raw-byte pre-scan ---- */

/* Reject raw NUL bytes and nesting beyond PROTO_MAX_DEPTH before jansson
 * sees the line: jansson recurses once per level (up to 2048), which is
 * far more stack and work than a message may cost. Strings are skipped
 * so brackets inside them do not count. */
static enum proto_reason prescan(const char *s, size_t n)
{
        unsigned depth = 0;
        bool in_str = false;

        if (memchr(s, '\0', n))
                return PROTO_E_NUL;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if (in_str) {
                        if (c == '\\')
                                i++; /* the escaped char cannot end it */
                        else if (c == '"')
                                in_str = false;
                        continue;
                }
                switch (c) {
                case '"': in_str = true; break;
                case '{':
                case '[':
                        if (++depth > PROTO_MAX_DEPTH)
                                return PROTO_E_TOO_DEEP;
                        break;
                case '}':
                case ']':
                        if (depth > 0)
                                depth--;
                        break;
                default: break;
                }
        }
        return PROTO_OK;
}

static enum proto_reason reason_of_jansson(const json_error_t *je)
{
        switch (json_error_code(je)) {
        case json_error_invalid_utf8: return PROTO_E_BAD_UTF8;
        case json_error_null_character:
        case json_error_null_byte_in_key: return PROTO_E_NUL;
        case json_error_numeric_overflow: return PROTO_E_BAD_NUMBER;
        case json_error_duplicate_key: return PROTO_E_DUPLICATE_KEY;
        case json_error_stack_overflow: return PROTO_E_TOO_DEEP;
        case json_error_out_of_memory: return PROTO_E_NOMEM;
        default: return PROTO_E_BAD_JSON;
        }
}

/* ---- compact serialisation of a jansson value ---- */

static int put_int(struct proto_buf *b, json_int_t v)
{
        char tmp[24];
        size_t i = sizeof(tmp);
        /* Through unsigned so INT64_MIN negates without overflow. */
        unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

        do {
                tmp[--i] = (char)('0' + u % 10);
                u /= 10;
        } while (u);
        if (v < 0)
                tmp[--i] = '-';
        return proto_buf_append(b, tmp + i, sizeof(tmp) - i);
}

/* Shortest "%.Ng" that reads back as the same double, with ".0" added
 * when it would otherwise look like an integer, so a real stays a real.
 * Assumes LC_NUMERIC is "C" (segops never calls setlocale for it). */
static int put_real(struct proto_buf *b, double v)
{
        char tmp[40];
        int w = 0;

        for (int prec = 15; prec <= 17; prec++) {
                w = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
                if (w < 0 || (size_t)w >= sizeof(tmp))
                        return -EINVAL;
                if (prec == 17 || strtod(tmp, NULL) == v)
                        break;
        }
        if (!strpbrk(tmp, ".e")) {
                if ((size_t)w + 2 >= sizeof(tmp))
                        return -EINVAL;
                memcpy(tmp + w, ".0", 3);
                w += 2;
        }
        return proto_buf_append(b, tmp, (size_t)w);
}

static int put_value(struct proto_buf *b, json_t *v)
{
        const char *key;
        json_t *item;
        size_t i;
        bool first = true;
        int r;

        switch (json_typeof(v)) {
        case JSON_OBJECT:
                r = proto_buf_append(b, "{", 1);
                if (r < 0)
                        return r;
                json_object_foreach(v, key, item)
                {
                        if (!first) {
                                r = proto_buf_append(b, ",", 1);
                                if (r < 0)
                                        return r;
                        }
                        first = false;
                        r = proto_json_escape(b, key, strlen(key));
                        if (r < 0)
                                return r;
                        r = proto_buf_append(b, ":", 1);
                        if (r < 0)
                                return r;
                        r = put_value(b, item);
                        if (r < 0)
                                return r;
                }
                return proto_buf_append(b, "}", 1);
        case JSON_ARRAY:
                r = proto_buf_append(b, "[", 1);
                if (r < 0)
                        return r;
                json_array_foreach(v, i, item)
                {
                        if (i > 0) {
                                r = proto_buf_append(b, ",", 1);
                                if (r < 0)
                                        return r;
                        }
                        r = put_value(b, item);
                        if (r < 0)
                                return r;
                }
                return proto_buf_append(b, "]", 1);
        case JSON_STRING: return proto_json_escape(b, json_string_value(v), json_string_length(v));
        case JSON_INTEGER: return put_int(b, json_integer_value(v));
        case JSON_REAL: return put_real(b, json_real_value(v));
        case JSON_TRUE: return proto_buf_append(b, "true", 4);
        case JSON_FALSE: return proto_buf_append(b, "false", 5);
        case JSON_NULL: return proto_buf_append(b, "null", 4);
        }
        return -EINVAL;
}

/* ---- field checks ---- */

/* A required or optional string of lo..hi bytes. */
static int check_string(json_t *v, enum field f, size_t lo, size_t hi, struct proto_error *err)
{
        size_t n;

        if (!json_is_string(v))
                return fail(err, PROTO_E_WRONG_TYPE, "field \"%s\" must be a string",
                            field_names[f]);
        n = json_string_length(v);
        if (n < lo || n > hi)
                return fail(err, PROTO_E_BAD_LENGTH, "field \"%s\" must be %zu-%zu bytes, not %zu",
                            field_names[f], lo, hi, n);
        return 0;
}

static int check_required_string(json_t *v, enum field f, size_t hi, struct proto_error *err)
{
        if (!v)
                return fail(err, PROTO_E_MISSING_FIELD, "missing field \"%s\"", field_names[f]);
        return check_string(v, f, 1, hi, err);
}

/* floor() for a double already known to be within int64 range; done by
 * hand so the parser needs no libm. */
static int64_t floor_i64(double d)
{
        int64_t t = (int64_t)d; /* truncates toward zero */

        return (double)t > d ? t - 1 : t;
}

/* Seconds since the epoch to ms, truncated toward the past like the
 * extra fraction digits of a string. A product within a microsecond of
 * a whole millisecond is taken as that millisecond, because 1.001 * 1000
 * is 1000.9999999999999 in binary and must not become 1000. */
static int epoch_to_ms(json_t *v, int64_t *ret_ms, struct proto_error *err)
{
        int64_t ms;

        if (json_is_integer(v)) {
                json_int_t s = json_integer_value(v);

                if (s < TIME_MIN_MS / 1000 || s > TIME_MAX_MS / 1000)
                        goto range;
                ms = (int64_t)s * 1000;
        } else {
                double d = json_real_value(v) * 1000.0;
                int64_t near;

                /* jansson never yields NaN or inf; the bounds keep the
                 * casts below defined. */
                if (!(d >= (double)TIME_MIN_MS - 1.0 && d <= (double)TIME_MAX_MS + 1.0))
                        goto range;
                near = floor_i64(d + 0.5);
                ms = (d - (double)near < 1e-3 && (double)near - d < 1e-3) ? near : floor_i64(d);
                if (ms < TIME_MIN_MS || ms > TIME_MAX_MS)
                        goto range;
        }
        *ret_ms = ms;
        return 0;
range:
        return fail(err, PROTO_E_BAD_TIMESTAMP,
                    "occurred_at must be epoch seconds within years 0000-9999");
}

static int check_time(json_t *v, int64_t now_ms, int64_t *ret_ms, struct proto_error *err)
{
        char shown[FIELD_NAME_SHOW];

        if (!v) {
                *ret_ms = now_ms;
                return 0;
        }
        if (json_is_number(v))
                return epoch_to_ms(v, ret_ms, err);
        if (!json_is_string(v))
                return fail(err, PROTO_E_WRONG_TYPE,
                            "field \"occurred_at\" must be an RFC 3339 string "
                            "or epoch seconds");
        if (proto_time_parse(json_string_value(v), json_string_length(v), ret_ms) < 0) {
                proto_printable(shown, sizeof(shown), json_string_value(v), json_string_length(v),
                                SHOWN);
                return fail(err, PROTO_E_BAD_TIMESTAMP,
                            "occurred_at \"%s\" is not an RFC 3339 date-time "
                            "within years 0000-9999",
                            shown);
        }
        return 0;
}

static int check_event_id(json_t *v, struct proto_error *err)
{
        if (!v)
                return 0;
        if (!json_is_string(v))
                return fail(err, PROTO_E_WRONG_TYPE, "field \"event_id\" must be a string");
        if (!proto_event_id_valid(json_string_value(v), json_string_length(v)))
                return fail(err, PROTO_E_BAD_EVENT_ID,
                            "event_id must be 1-%d characters of "
                            "[A-Za-z0-9._:-]",
                            PROTO_EVENT_ID_MAX);
        return 0;
}

static int check_object(json_t *v, enum field f, struct proto_error *err)
{
        if (v && !json_is_object(v))
                return fail(err, PROTO_E_WRONG_TYPE, "field \"%s\" must be an object",
                            field_names[f]);
        return 0;
}

/* One pass over the keys: fill slots[] and stop at the first key the
 * message does not have, naming it. */
static int collect(json_t *root, unsigned allowed, const char *what, json_t *slots[F_COUNT],
                   struct proto_error *err)
{
        char shown[FIELD_NAME_SHOW];

        for (void *it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
                const char *key = json_object_iter_key(it);
                enum field f = classify(key);

                if (f == F_UNKNOWN || !(allowed & BIT(f))) {
                        proto_printable(shown, sizeof(shown), key, strlen(key), SHOWN);
                        return fail(err, PROTO_E_UNKNOWN_FIELD, "unknown field \"%s\" in %s", shown,
                                    what);
                }
                slots[f] = json_object_iter_value(it);
        }
        return 0;
}

/* ---- the two message kinds ---- */

static int parse_op(json_t *root, json_t *opv, struct proto_msg *msg, struct proto_error *err)
{
        json_t *slots[F_COUNT] = { 0 };
        char shown[FIELD_NAME_SHOW];
        const char *name;
        size_t k;
        int64_t timeout = PROTO_FLUSH_TIMEOUT_MS;
        json_int_t count = 0, pid = 0;
        int r;

        if (!json_is_string(opv))
                return fail(err, PROTO_E_WRONG_TYPE, "field \"op\" must be a string");
        name = json_string_value(opv);
        for (k = 0; k < sizeof(ops) / sizeof(ops[0]); k++)
                if (!strcmp(name, ops[k].name))
                        break;
        if (k == sizeof(ops) / sizeof(ops[0])) {
                proto_printable(shown, sizeof(shown), name, json_string_length(opv), SHOWN);
                return fail(err, PROTO_E_UNKNOWN_OP, "unknown op \"%s\"", shown);
        }
        r = collect(root, ops[k].allowed, ops[k].name, slots, err);
        if (r < 0)
                return r;

        if (ops[k].op == PROTO_OP_FLUSH && slots[F_TIMEOUT_MS]) {
                if (!json_is_integer(slots[F_TIMEOUT_MS]))
                        return fail(err, PROTO_E_WRONG_TYPE,
                                    "field \"timeout_ms\" must be an integer");
                timeout = json_integer_value(slots[F_TIMEOUT_MS]);
                if (timeout < 0 || timeout > PROTO_FLUSH_TIMEOUT_MAX_MS)
                        return fail(err, PROTO_E_BAD_VALUE, "timeout_ms must be 0-%d",
                                    PROTO_FLUSH_TIMEOUT_MAX_MS);
        }
        if (ops[k].op == PROTO_OP_CLIENT_DROPPED) {
                if (!slots[F_DROP_COUNT])
                        return fail(err, PROTO_E_MISSING_FIELD, "missing field \"count\"");
                if (!json_is_integer(slots[F_DROP_COUNT]))
                        return fail(err, PROTO_E_WRONG_TYPE, "field \"count\" must be an integer");
                count = json_integer_value(slots[F_DROP_COUNT]);
                if (count < 1 || count > PROTO_DROP_COUNT_MAX)
                        return fail(err, PROTO_E_BAD_VALUE, "count must be 1-%lld",
                                    (long long)PROTO_DROP_COUNT_MAX);
                if (slots[F_PID] && !json_is_integer(slots[F_PID]))
                        return fail(err, PROTO_E_WRONG_TYPE, "field \"pid\" must be an integer");
                if (slots[F_PID]) {
                        pid = json_integer_value(slots[F_PID]);
                        if (pid < 1 || pid > INT32_MAX)
                                return fail(err, PROTO_E_BAD_VALUE, "pid must be 1-%d", INT32_MAX);
                }
        }
        if (ops[k].op == PROTO_OP_SET_USER) {
                r = check_required_string(slots[F_USER_ID], F_USER_ID, PROTO_USER_ID_MAX, err);
                if (r < 0)
                        return r;
                if (slots[F_USER_ID_SIG]) {
                        r = check_string(slots[F_USER_ID_SIG], F_USER_ID_SIG, 1,
                                         PROTO_USER_ID_SIG_MAX, err);
                        if (r < 0)
                                return r;
                }
        }

        /* Valid: only now touch the caller's msg. */
        msg->kind = PROTO_MSG_OP;
        msg->op = ops[k].op;
        msg->timeout_ms = ops[k].op == PROTO_OP_FLUSH ? timeout : 0;
        msg->count = (uint64_t)count;
        msg->client_pid = (int32_t)pid;
        msg->user_id[0] = '\0';
        msg->user_id_sig[0] = '\0';
        msg->has_sig = false;
        if (ops[k].op == PROTO_OP_SET_USER) {
                json_t *u = slots[F_USER_ID], *s = slots[F_USER_ID_SIG];

                memcpy(msg->user_id, json_string_value(u), json_string_length(u) + 1);
                if (s) {
                        memcpy(msg->user_id_sig, json_string_value(s), json_string_length(s) + 1);
                        msg->has_sig = true;
                }
        }
        return 0;
}

static int put_field(struct proto_buf *out, const char *lead, json_t *v)
{
        int r = proto_buf_append(out, lead, strlen(lead));

        if (r < 0)
                return r;
        return proto_json_escape(out, json_string_value(v), json_string_length(v));
}

/* Write the normalised upstream event; the caller restores out->len if
 * this runs out of memory half way. */
static int emit_event(struct proto_buf *out, json_t *slots[F_COUNT], bool identify, int64_t at,
                      const uint8_t rnd[16])
{
        char idbuf[PROTO_UUID_LEN + 1], tbuf[PROTO_TIME_LEN + 1];
        int r;

        if (slots[F_EVENT_ID]) {
                r = put_field(out, "{\"event_id\":", slots[F_EVENT_ID]);
        } else {
                proto_uuid_format(rnd, idbuf);
                r = proto_buf_append(out, "{\"event_id\":\"", 13);
                if (r >= 0)
                        r = proto_buf_append(out, idbuf, PROTO_UUID_LEN);
                if (r >= 0)
                        r = proto_buf_append(out, "\"", 1);
        }
        if (r < 0)
                return r;
        r = put_field(out, ",\"user_id\":", slots[F_USER_ID]);
        if (r < 0)
                return r;
        if (identify)
                r = proto_buf_append_str(out, ",\"event_type\":\"context_identified\"");
        else
                r = put_field(out, ",\"event_type\":", slots[F_EVENT_TYPE]);
        if (r < 0)
                return r;
        proto_time_format(at, tbuf);
        r = proto_buf_append_str(out, ",\"occurred_at\":\"");
        if (r < 0)
                return r;
        r = proto_buf_append(out, tbuf, PROTO_TIME_LEN);
        if (r < 0)
                return r;
        if (identify) {
                r = proto_buf_append_str(out, "\",\"payload\":{\"traits\":");
                if (r < 0)
                        return r;
                r = slots[F_TRAITS] ? put_value(out, slots[F_TRAITS])
                                    : proto_buf_append(out, "{}", 2);
                if (r < 0)
                        return r;
                r = proto_buf_append(out, "}}", 2);
        } else {
                r = proto_buf_append_str(out, "\",\"payload\":");
                if (r < 0)
                        return r;
                r = slots[F_PAYLOAD] ? put_value(out, slots[F_PAYLOAD])
                                     : proto_buf_append(out, "{}", 2);
                if (r < 0)
                        return r;
                r = proto_buf_append(out, "}", 1);
        }
        return r;
}

static int parse_event(json_t *root, json_t *typev, int64_t now_ms, const uint8_t rnd[16],
                       struct proto_buf *out, struct proto_msg *msg, struct proto_error *err)
{
        json_t *slots[F_COUNT] = { 0 };
        char shown[FIELD_NAME_SHOW];
        bool identify = false;
        int64_t at;
        int r;

        if (typev) {
                const char *t;

                if (!json_is_string(typev))
                        return fail(err, PROTO_E_WRONG_TYPE, "field \"type\" must be a string");
                t = json_string_value(typev);
                if (!strcmp(t, "identify")) {
                        identify = true;
                } else if (strcmp(t, "track") != 0) {
                        proto_printable(shown, sizeof(shown), t, json_string_length(typev), SHOWN);
                        return fail(err, PROTO_E_BAD_TYPE,
                                    "type \"%s\" is neither \"track\" nor "
                                    "\"identify\"",
                                    shown);
                }
        }
        r = collect(root, identify ? IDENTIFY_FIELDS : TRACK_FIELDS,
                    identify ? "identify" : "track", slots, err);
        if (r < 0)
                return r;

        r = check_required_string(slots[F_USER_ID], F_USER_ID, PROTO_USER_ID_MAX, err);
        if (r < 0)
                return r;
        if (!identify) {
                r = check_required_string(slots[F_EVENT_TYPE], F_EVENT_TYPE, PROTO_EVENT_TYPE_MAX,
                                          err);
                if (r < 0)
                        return r;
        }
        r = check_event_id(slots[F_EVENT_ID], err);
        if (r < 0)
                return r;
        r = check_time(slots[F_OCCURRED_AT], now_ms, &at, err);
        if (r < 0)
                return r;
        r = check_object(slots[identify ? F_TRAITS : F_PAYLOAD], identify ? F_TRAITS : F_PAYLOAD,
                         err);
        if (r < 0)
                return r;

        r = emit_event(out, slots, identify, at, rnd);
        if (r < 0)
                return fail(err, PROTO_E_NOMEM, "out of memory");

        proto_msg_set_event(msg);
        return 0;
}

/* Is the integer literal of n digits at d (no sign, no leading zeros)
 * outside int64? neg: it had a minus sign. */
static bool beyond_int64(const char *d, size_t n, bool neg)
{
        if (n != 19)
                return n > 19;
        return memcmp(d, neg ? "9223372036854775808" : "9223372036854775807", 19) > 0;
}

/* SPEC 2 rejects only numbers that fit neither int64 nor a finite
 * double, but jansson refuses an integer literal beyond int64 outright.
 * This copies the line with ".0" after each such literal (outside
 * strings), so that jansson reads exactly those as doubles and every
 * other number keeps its kind. Returns the copy (malloc'd, *ret_len
 * long), or NULL when there is nothing to widen or no memory. */
static char *widen_big_ints(const char *s, size_t len, size_t *ret_len)
{
        /* Each widened literal has 20+ characters and gains 2. */
        char *w = malloc(len + len / 10 + 4);
        size_t i = 0, o = 0, widened = 0;
        bool in_str = false;

        if (!w)
                return NULL;
        while (i < len) {
                char c = s[i];

                if (in_str) {
                        w[o++] = s[i++];
                        if (c == '\\' && i < len)
                                w[o++] = s[i++];
                        else if (c == '"')
                                in_str = false;
                        continue;
                }
                if (c == '"') {
                        in_str = true;
                        w[o++] = s[i++];
                        continue;
                }
                if (c != '-' && (c < '0' || c > '9')) {
                        w[o++] = s[i++];
                        continue;
                }
                /* A whole number token: sign, digits, fraction, exponent. */
                size_t start = i, d0;
                bool neg = c == '-', plain = true;

                if (neg)
                        i++;
                d0 = i;
                while (i < len && s[i] >= '0' && s[i] <= '9')
                        i++;
                size_t nd = i - d0;
                if (i < len && s[i] == '.') {
                        plain = false;
                        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
                                ;
                }
                if (i < len && (s[i] == 'e' || s[i] == 'E')) {
                        plain = false;
                        i++;
                        if (i < len && (s[i] == '+' || s[i] == '-'))
                                i++;
                        while (i < len && s[i] >= '0' && s[i] <= '9')
                                i++;
                }
                memcpy(w + o, s + start, i - start);
                o += i - start;
                if (plain && nd > 0 && s[d0] != '0' && beyond_int64(s + d0, nd, neg)) {
                        w[o++] = '.';
                        w[o++] = '0';
                        widened++;
                }
        }
        if (!widened) {
                free(w);
                return NULL;
        }
        *ret_len = o;
        return w;
}

int proto_parse_slow(const char *line, size_t len, size_t max_bytes, int64_t now_ms,
                     const uint8_t rnd[16], struct proto_buf *out, struct proto_msg *msg,
                     struct proto_error *err)
{
        size_t entry;
        json_error_t je;
        json_t *root = NULL;
        json_t *opv;
        enum proto_reason why;
        char shown[sizeof(err->detail) - 24];
        int r;

        if ((!line && len) || !rnd || !out || !msg)
                return fail(err, PROTO_E_BAD_VALUE, "invalid arguments");
        entry = out->len;

        if (proto_message_len(line, len) > max_bytes)
                return fail(err, PROTO_E_OVERSIZE, "message of %zu bytes exceeds the limit of %zu",
                            len, max_bytes);
        while (len > 0 &&
               (line[0] == ' ' || line[0] == '\t' || line[0] == '\r' || line[0] == '\n')) {
                line++;
                len--;
        }
        while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r' ||
                           line[len - 1] == '\n'))
                len--;
        if (len == 0)
                return fail(err, PROTO_E_BAD_JSON, "empty message");

        why = prescan(line, len);
        if (why == PROTO_E_NUL)
                return fail(err, why, "raw NUL byte in message");
        if (why == PROTO_E_TOO_DEEP)
                return fail(err, why, "nesting deeper than %d levels", PROTO_MAX_DEPTH);

        root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
        if (!root && json_error_code(&je) == json_error_numeric_overflow) {
                /* Integers beyond int64 are taken as doubles; a number
                 * too big for a double (1e400) stays an error. */
                size_t wlen;
                char *w = widen_big_ints(line, len, &wlen);

                /* The second reading's error is the message's own
                 * (a duplicate key, a \u0000 ... after the big integer):
                 * it replaces the first's "too big integer". */
                if (w) {
                        root = json_loadb(w, wlen, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
                        free(w);
                }
        }
        if (!root) {
                why = reason_of_jansson(&je);
                /* jansson quotes input near the error: keep it printable. */
                proto_printable(shown, sizeof(shown), je.text, strnlen(je.text, sizeof(je.text)),
                                SHOWN);
                return fail(err, why, "%s at byte %d", shown, je.position);
        }
        if (!json_is_object(root)) {
                r = fail(err, PROTO_E_NOT_OBJECT, "message must be a JSON object");
                goto out;
        }

        opv = json_object_get(root, "op");
        if (opv)
                r = parse_op(root, opv, msg, err);
        else
                r = parse_event(root, json_object_get(root, "type"), now_ms, rnd, out, msg, err);
        if (r >= 0 && err) {
                err->reason = PROTO_OK;
                err->detail[0] = '\0';
        }
out:
        if (r < 0)
                out->len = entry;
        json_decref(root);
        return r;
}

/* The common message takes the allocation-free path of fast.c, which
 * declines (touching nothing) whatever it does not handle exactly like
 * the code above; everything else, every rejection included, is done
 * here. */
int proto_parse(const char *line, size_t len, size_t max_bytes, int64_t now_ms,
                const uint8_t rnd[16], struct proto_buf *out, struct proto_msg *msg,
                struct proto_error *err)
{
        int r = proto_parse_fast(line, len, max_bytes, now_ms, rnd, out, msg, err);

        if (r != PROTO_FAST_UNHANDLED)
                return r;
        return proto_parse_slow(line, len, max_bytes, now_ms, rnd, out, msg, err);
}
