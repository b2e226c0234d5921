/* normalise.c - the one shape an accepted event takes upstream.
 *
 * From the values of an event the jansson path accepted (message.c), it
 * writes the compact JSON object PROTOCOL.md's "Normalisation" describes:
 * exactly event_id, user_id, event_type, occurred_at, payload, in that
 * order; identify as event_type "context_identified" with its traits
 * under payload. It serialises the payload itself rather than through
 * json_dumps, so that strings are re-escaped minimally, integers come out
 * exactly, reals in their shortest round-trip form, and nothing is
 * allocated beyond the caller's buffer.
 */
#include "slow-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int put_field(struct proto_buf *out, const char *lead, json_t *v)
{
        int r = proto_buf_append(out, lead, strlen(lead));

        if (r < 0)
                return r;
        return proto_json_escape(out, json_string_value(v), json_string_length(v));
}

int proto__emit_event(struct proto_buf *out, const struct proto__event *ev, const uint8_t rnd[16])
{
        char idbuf[PROTO_UUID_LEN + 1], tbuf[PROTO_TIME_LEN + 1];
        int r;

        if (ev->event_id) {
                r = put_field(out, "{\"event_id\":", ev->event_id);
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
        r = put_field(out, ",\"user_id\":", ev->user_id);
        if (r < 0)
                return r;
        if (ev->identify)
                r = proto_buf_append_str(out, ",\"event_type\":\"context_identified\"");
        else
                r = put_field(out, ",\"event_type\":", ev->event_type);
        if (r < 0)
                return r;
        proto_time_format(ev->at, tbuf);
        r = proto_buf_append_str(out, ",\"occurred_at\":\"");
        if (r < 0)
                return r;
        r = proto_buf_append(out, tbuf, PROTO_TIME_LEN);
        if (r < 0)
                return r;
        if (ev->identify) {
                r = proto_buf_append_str(out, "\",\"payload\":{\"traits\":");
                if (r < 0)
                        return r;
                r = ev->object ? put_value(out, ev->object) : proto_buf_append(out, "{}", 2);
                if (r < 0)
                        return r;
                r = proto_buf_append(out, "}}", 2);
        } else {
                r = proto_buf_append_str(out, "\",\"payload\":");
                if (r < 0)
                        return r;
                r = ev->object ? put_value(out, ev->object) : proto_buf_append(out, "{}", 2);
                if (r < 0)
                        return r;
                r = proto_buf_append(out, "}", 1);
        }
        return r;
}
