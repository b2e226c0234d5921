/* message.c - the rules of each message kind, on a parsed JSON object.
 *
 * Given the object parse.c read, this decides what the message is and
 * whether it keeps PROTOCOL.md's rules: an op (its name, the keys it
 * takes, each value's type and range) or a track or identify event
 * (required fields, lengths, event_id, occurred_at as RFC 3339 or epoch
 * seconds, payload or traits an object). Faults are reported in the
 * order PROTOCOL.md gives, under their stable reasons, with a detail
 * that shows client-chosen names only in printable form. An op fills
 * the caller's proto_msg; an event goes to normalise.c to be written.
 */
#include "slow-internal.h"

#include <errno.h>
#include <string.h>

#define FIELD_NAME_SHOW 72 /* room for a user-chosen name in a detail */

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
        { "metrics", PROTO_OP_METRICS, BIT(F_OP) },
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

/* ---- field checks ---- */

/* A required or optional string of lo..hi bytes. */
static int check_string(json_t *v, enum field f, size_t lo, size_t hi, struct proto_error *err)
{
        size_t n;

        if (!json_is_string(v))
                return proto__fail(err, PROTO_E_WRONG_TYPE, "field \"%s\" must be a string",
                                   field_names[f]);
        n = json_string_length(v);
        if (n < lo || n > hi)
                return proto__fail(err, PROTO_E_BAD_LENGTH,
                                   "field \"%s\" must be %zu-%zu bytes, not %zu", field_names[f],
                                   lo, hi, n);
        return 0;
}

static int check_required_string(json_t *v, enum field f, size_t hi, struct proto_error *err)
{
        if (!v)
                return proto__fail(err, PROTO_E_MISSING_FIELD, "missing field \"%s\"",
                                   field_names[f]);
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

                if (s < PROTO_TIME_MIN_MS / 1000 || s > PROTO_TIME_MAX_MS / 1000)
                        goto range;
                ms = (int64_t)s * 1000;
        } else {
                double d = json_real_value(v) * 1000.0;
                int64_t near;

                /* jansson never yields NaN or inf; the bounds keep the
                 * casts below defined. */
                if (!(d >= (double)PROTO_TIME_MIN_MS - 1.0 && d <= (double)PROTO_TIME_MAX_MS + 1.0))
                        goto range;
                near = floor_i64(d + 0.5);
                ms = (d - (double)near < 1e-3 && (double)near - d < 1e-3) ? near : floor_i64(d);
                if (ms < PROTO_TIME_MIN_MS || ms > PROTO_TIME_MAX_MS)
                        goto range;
        }
        *ret_ms = ms;
        return 0;
range:
        return proto__fail(err, PROTO_E_BAD_TIMESTAMP,
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
                return proto__fail(err, PROTO_E_WRONG_TYPE,
                                   "field \"occurred_at\" must be an RFC 3339 string "
                                   "or epoch seconds");
        if (proto_time_parse(json_string_value(v), json_string_length(v), ret_ms) < 0) {
                proto_printable(shown, sizeof(shown), json_string_value(v), json_string_length(v),
                                PROTO__SHOWN);
                return proto__fail(err, PROTO_E_BAD_TIMESTAMP,
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
                return proto__fail(err, PROTO_E_WRONG_TYPE, "field \"event_id\" must be a string");
        if (!proto_event_id_valid(json_string_value(v), json_string_length(v)))
                return proto__fail(err, PROTO_E_BAD_EVENT_ID,
                                   "event_id must be 1-%d characters of "
                                   "[A-Za-z0-9._:-]",
                                   PROTO_EVENT_ID_MAX);
        return 0;
}

static int check_object(json_t *v, enum field f, struct proto_error *err)
{
        if (v && !json_is_object(v))
                return proto__fail(err, PROTO_E_WRONG_TYPE, "field \"%s\" must be an object",
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
                        proto_printable(shown, sizeof(shown), key, strlen(key), PROTO__SHOWN);
                        return proto__fail(err, PROTO_E_UNKNOWN_FIELD, "unknown field \"%s\" in %s",
                                           shown, what);
                }
                slots[f] = json_object_iter_value(it);
        }
        return 0;
}

/* ---- the two message kinds ---- */

/* The op opv names: its index in ops[], or -EINVAL with err filled. */
static int find_op(json_t *opv, struct proto_error *err)
{
        char shown[FIELD_NAME_SHOW];
        const char *name;

        if (!json_is_string(opv))
                return proto__fail(err, PROTO_E_WRONG_TYPE, "field \"op\" must be a string");
        name = json_string_value(opv);
        for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++)
                if (!strcmp(name, ops[k].name))
                        return (int)k;
        proto_printable(shown, sizeof(shown), name, json_string_length(opv), PROTO__SHOWN);
        return proto__fail(err, PROTO_E_UNKNOWN_OP, "unknown op \"%s\"", shown);
}

/* flush's timeout_ms: an integer 0..PROTO_FLUSH_TIMEOUT_MAX_MS, when
 * given. */
static int check_timeout(json_t *v, int64_t *ret_ms, struct proto_error *err)
{
        int64_t ms;

        if (!v)
                return 0;
        if (!json_is_integer(v))
                return proto__fail(err, PROTO_E_WRONG_TYPE,
                                   "field \"timeout_ms\" must be an integer");
        ms = json_integer_value(v);
        if (ms < 0 || ms > PROTO_FLUSH_TIMEOUT_MAX_MS)
                return proto__fail(err, PROTO_E_BAD_VALUE, "timeout_ms must be 0-%d",
                                   PROTO_FLUSH_TIMEOUT_MAX_MS);
        *ret_ms = ms;
        return 0;
}

/* client_dropped's count (required, 1..2^53-1) and pid (optional,
 * 1..INT32_MAX; 0 when absent). */
static int check_drop_report(json_t *slots[F_COUNT], json_int_t *ret_count, json_int_t *ret_pid,
                             struct proto_error *err)
{
        json_t *c = slots[F_DROP_COUNT], *p = slots[F_PID];

        if (!c)
                return proto__fail(err, PROTO_E_MISSING_FIELD, "missing field \"count\"");
        if (!json_is_integer(c))
                return proto__fail(err, PROTO_E_WRONG_TYPE, "field \"count\" must be an integer");
        *ret_count = json_integer_value(c);
        if (*ret_count < 1 || *ret_count > PROTO_DROP_COUNT_MAX)
                return proto__fail(err, PROTO_E_BAD_VALUE, "count must be 1-%lld",
                                   (long long)PROTO_DROP_COUNT_MAX);
        if (!p)
                return 0;
        if (!json_is_integer(p))
                return proto__fail(err, PROTO_E_WRONG_TYPE, "field \"pid\" must be an integer");
        *ret_pid = json_integer_value(p);
        if (*ret_pid < 1 || *ret_pid > INT32_MAX)
                return proto__fail(err, PROTO_E_BAD_VALUE, "pid must be 1-%d", INT32_MAX);
        return 0;
}

/* set_user's user_id (required) and user_id_sig (optional). */
static int check_set_user(json_t *slots[F_COUNT], struct proto_error *err)
{
        int r = check_required_string(slots[F_USER_ID], F_USER_ID, PROTO_USER_ID_MAX, err);

        if (r < 0 || !slots[F_USER_ID_SIG])
                return r;
        return check_string(slots[F_USER_ID_SIG], F_USER_ID_SIG, 1, PROTO_USER_ID_SIG_MAX, err);
}

/* The values of a valid op, for set_op(). */
struct op_values {
        int64_t timeout_ms; /* flush */
        json_int_t count;   /* client_dropped */
        json_int_t pid;     /* client_dropped, 0 when absent */
};

/* Describe a valid op in msg: the first time the caller's msg is
 * touched. */
static void set_op(struct proto_msg *msg, enum proto_op op, const struct op_values *v,
                   json_t *slots[F_COUNT])
{
        json_t *u = slots[F_USER_ID], *sig = slots[F_USER_ID_SIG];

        msg->kind = PROTO_MSG_OP;
        msg->op = op;
        msg->timeout_ms = op == PROTO_OP_FLUSH ? v->timeout_ms : 0;
        msg->count = (uint64_t)v->count;
        msg->client_pid = (int32_t)v->pid;
        msg->user_id[0] = '\0';
        msg->user_id_sig[0] = '\0';
        msg->has_sig = false;
        if (op != PROTO_OP_SET_USER)
                return;
        memcpy(msg->user_id, json_string_value(u), json_string_length(u) + 1);
        if (sig) {
                memcpy(msg->user_id_sig, json_string_value(sig), json_string_length(sig) + 1);
                msg->has_sig = true;
        }
}

int proto__parse_op(json_t *root, json_t *opv, struct proto_msg *msg, struct proto_error *err)
{
        json_t *slots[F_COUNT] = { 0 };
        struct op_values v = { .timeout_ms = PROTO_FLUSH_TIMEOUT_MS };
        int k, r;

        k = find_op(opv, err);
        if (k < 0)
                return k;
        r = collect(root, ops[k].allowed, ops[k].name, slots, err);
        if (r < 0)
                return r;
        switch (ops[k].op) {
        case PROTO_OP_FLUSH: r = check_timeout(slots[F_TIMEOUT_MS], &v.timeout_ms, err); break;
        case PROTO_OP_CLIENT_DROPPED: r = check_drop_report(slots, &v.count, &v.pid, err); break;
        case PROTO_OP_SET_USER: r = check_set_user(slots, err); break;
        default: break;
        }
        if (r < 0)
                return r;
        set_op(msg, ops[k].op, &v, slots);
        return 0;
}

/* An event's "type", when given: identify or track. 0 (*ret_identify
 * set) or -EINVAL. */
static int event_kind(json_t *typev, bool *ret_identify, struct proto_error *err)
{
        char shown[FIELD_NAME_SHOW];
        const char *t;

        *ret_identify = false;
        if (!typev)
                return 0;
        if (!json_is_string(typev))
                return proto__fail(err, PROTO_E_WRONG_TYPE, "field \"type\" must be a string");
        t = json_string_value(typev);
        if (!strcmp(t, "identify")) {
                *ret_identify = true;
                return 0;
        }
        if (!strcmp(t, "track"))
                return 0;
        proto_printable(shown, sizeof(shown), t, json_string_length(typev), PROTO__SHOWN);
        return proto__fail(err, PROTO_E_BAD_TYPE,
                           "type \"%s\" is neither \"track\" nor \"identify\"", shown);
}

int proto__parse_event(json_t *root, json_t *typev, int64_t now_ms, const uint8_t rnd[16],
                       struct proto_buf *out, struct proto_msg *msg, struct proto_error *err)
{
        json_t *slots[F_COUNT] = { 0 };
        struct proto__event ev;
        bool identify;
        int64_t at;
        int r;

        r = event_kind(typev, &identify, err);
        if (r < 0)
                return r;
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

        ev.event_id = slots[F_EVENT_ID];
        ev.user_id = slots[F_USER_ID];
        ev.event_type = identify ? NULL : slots[F_EVENT_TYPE];
        ev.object = slots[identify ? F_TRAITS : F_PAYLOAD];
        ev.identify = identify;
        ev.at = at;
        r = proto__emit_event(out, &ev, rnd);
        if (r < 0)
                return proto__fail(err, PROTO_E_NOMEM, "out of memory");

        proto_msg_set_event(msg);
        return 0;
}
