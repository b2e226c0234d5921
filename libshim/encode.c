/* encode.c - libshim's encoder: one NDJSON line per call, no I/O.
 *
 * It turns the arguments of a public call into the exact line the
 * daemon parses (PROTOCOL.md), into a caller-supplied fixed buffer so the
 * common case allocates nothing; only a line that outgrows the buffer
 * moves to the heap, up to SHIM_MAX_LINE. Strings are escaped (quote,
 * backslash, control characters as \n \t ... or \u00XX) after checking
 * they are valid UTF-8, both by the daemon's own code (proto_utf8_valid,
 * proto_json_escape_to): an invalid argument is the caller's error to
 * hear about (-EINVAL) rather than an event the daemon would silently
 * reject. Payloads are JSON object text checked only cheaply; their raw
 * CR/LF become spaces so they cannot split the line.
 */
#include "shim-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

void shim_line_init(struct shim_line *l, char *buf, size_t cap)
{
        l->p = buf;
        l->len = 0;
        l->cap = cap;
        l->heap = NULL;
        l->err = 0;
}

void shim_line_free(struct shim_line *l)
{
        if (!l)
                return;
        free(l->heap);
        l->heap = NULL;
        l->p = NULL;
        l->len = l->cap = 0;
}

/* Make room for n more bytes; records the first error in l->err. */
static bool line_room(struct shim_line *l, size_t n)
{
        size_t need, cap;
        char *p;

        if (l->err)
                return false;
        if (n <= l->cap - l->len)
                return true;
        if (n > SHIM_MAX_LINE || l->len + n > SHIM_MAX_LINE) {
                l->err = -EMSGSIZE;
                return false;
        }
        need = l->len + n;
        cap = l->cap * 2;
        if (cap < need)
                cap = need;
        if (cap > SHIM_MAX_LINE)
                cap = SHIM_MAX_LINE;
        if (l->heap) {
                p = realloc(l->heap, cap);
        } else {
                p = malloc(cap);
                if (p)
                        memcpy(p, l->p, l->len);
        }
        if (!p) {
                l->err = -ENOMEM;
                return false;
        }
        l->heap = l->p = p;
        l->cap = cap;
        return true;
}

static void line_add(struct shim_line *l, const char *s, size_t n)
{
        if (!line_room(l, n))
                return;
        memcpy(l->p + l->len, s, n);
        l->len += n;
}

#define LIT_ARGS(s) (s), sizeof(s) - 1
#define LINE_LIT(l, s) line_add((l), LIT_ARGS(s))

/* Append s as a JSON string literal (escaped by proto, the daemon's own
 * rules). The caller validated UTF-8. */
static void add_string(struct shim_line *l, const char *s, size_t n)
{
        /* Room for the worst case up front keeps the escaping itself
         * free of checks. */
        if (!line_room(l, n <= SHIM_MAX_LINE / 6 ? PROTO_JSON_ESCAPED_MAX(n) : SHIM_MAX_LINE + 1))
                return;
        l->len += proto_json_escape_to(l->p + l->len, s, n);
}

/* A string argument of 1..max bytes of valid UTF-8: its length, or
 * (size_t)-1. */
static size_t check_string(const char *s, size_t max)
{
        size_t n;

        if (!s)
                return (size_t)-1;
        n = strnlen(s, max + 1);
        if (n == 0 || n > max || !proto_utf8_valid(s, n))
                return (size_t)-1;
        return n;
}

static bool is_ws(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Append a JSON object given as text (NULL = {}), checked cheaply. */
static int add_object(struct shim_line *l, const char *json)
{
        const char *b, *e;
        size_t n, i;
        char *o;

        if (!json) {
                LINE_LIT(l, "{}");
                return 0;
        }
        n = strnlen(json, SHIM_MAX_LINE + 1);
        if (n > SHIM_MAX_LINE)
                return -EMSGSIZE;
        b = json;
        e = json + n;
        while (b < e && is_ws(*b))
                b++;
        while (e > b && is_ws(e[-1]))
                e--;
        if (e - b < 2 || *b != '{' || e[-1] != '}')
                return -EINVAL;
        n = (size_t)(e - b);
        if (!proto_utf8_valid(b, n))
                return -EINVAL;
        if (!line_room(l, n))
                return 0; /* l->err says why */
        o = l->p + l->len;
        memcpy(o, b, n);
        /* Raw CR/LF are whitespace between JSON tokens and invalid inside
         * strings anyway; as spaces they can no longer split the line. */
        for (i = 0; i < n; i++)
                if (o[i] == '\n' || o[i] == '\r')
                        o[i] = ' ';
        l->len += n;
        return 0;
}

static void add_time(struct shim_line *l, int64_t ms)
{
        char t[PROTO_TIME_LEN + 1];

        proto_time_format(ms, t);
        line_add(l, t, PROTO_TIME_LEN);
}

static int finish(struct shim_line *l)
{
        LINE_LIT(l, "\n");
        return l->err;
}

/* What follows the names in a track or identify line: the time, then
 * after_time (its closing quote, the comma and the object's key:
 * "\",\"payload\":" or "\",\"traits\":", in LIT_ARGS form), the object,
 * the closing brace and the newline. */
static inline int add_event_tail(struct shim_line *l, int64_t occurred_at_ms,
                                 const char *after_time, size_t after_len, const char *object_json)
{
        int r;

        LINE_LIT(l, ",\"occurred_at\":\"");
        add_time(l, occurred_at_ms);
        line_add(l, after_time, after_len);
        r = add_object(l, object_json);
        if (r < 0)
                return r;
        LINE_LIT(l, "}");
        return finish(l);
}

int shim_encode_track(struct shim_line *l, const char *user_id, const char *event_type,
                      int64_t occurred_at_ms, const char *payload_json)
{
        size_t nu = check_string(user_id, PROTO_USER_ID_MAX);
        size_t ne = check_string(event_type, PROTO_EVENT_TYPE_MAX);

        if (nu == (size_t)-1 || ne == (size_t)-1)
                return -EINVAL;
        LINE_LIT(l, "{\"user_id\":");
        add_string(l, user_id, nu);
        LINE_LIT(l, ",\"event_type\":");
        add_string(l, event_type, ne);
        return add_event_tail(l, occurred_at_ms, LIT_ARGS("\",\"payload\":"), payload_json);
}

int shim_encode_identify(struct shim_line *l, const char *user_id, int64_t occurred_at_ms,
                         const char *traits_json)
{
        size_t nu = check_string(user_id, PROTO_USER_ID_MAX);

        if (nu == (size_t)-1)
                return -EINVAL;
        LINE_LIT(l, "{\"type\":\"identify\",\"user_id\":");
        add_string(l, user_id, nu);
        return add_event_tail(l, occurred_at_ms, LIT_ARGS("\",\"traits\":"), traits_json);
}

int shim_encode_set_user(struct shim_line *l, const char *user_id, const char *user_id_sig)
{
        size_t nu, ns = 0;

        nu = check_string(user_id, PROTO_USER_ID_MAX);
        if (nu == (size_t)-1)
                return -EINVAL;
        if (user_id_sig) {
                ns = check_string(user_id_sig, PROTO_USER_ID_SIG_MAX);
                if (ns == (size_t)-1)
                        return -EINVAL;
        }
        LINE_LIT(l, "{\"op\":\"set_user\",\"user_id\":");
        add_string(l, user_id, nu);
        if (user_id_sig) {
                LINE_LIT(l, ",\"user_id_sig\":");
                add_string(l, user_id_sig, ns);
        }
        LINE_LIT(l, "}");
        return finish(l);
}

int shim_encode_reset_session(struct shim_line *l)
{
        LINE_LIT(l, "{\"op\":\"reset_session\"}");
        return finish(l);
}

size_t shim_put_decimal(char *out, uint64_t v)
{
        char digits[24];
        size_t nd = 0, n = 0;

        do {
                digits[nd++] = (char)('0' + v % 10);
                v /= 10;
        } while (v);
        while (nd)
                out[n++] = digits[--nd];
        return n;
}

size_t shim_encode_dropped(char *out, size_t cap, uint64_t count, int32_t pid)
{
        static const char pre[] = "{\"op\":\"client_dropped\",\"count\":";
        static const char mid[] = ",\"pid\":";
        size_t n;

        if (count > (uint64_t)PROTO_DROP_COUNT_MAX)
                count = (uint64_t)PROTO_DROP_COUNT_MAX;
        /* Worst case: both numbers at 20 digits, then "}\n". */
        if (cap < sizeof(pre) - 1 + 20 + sizeof(mid) - 1 + 20 + 2)
                return 0;
        memcpy(out, pre, sizeof(pre) - 1);
        n = sizeof(pre) - 1;
        n += shim_put_decimal(out + n, count);
        if (pid > 0) {
                memcpy(out + n, mid, sizeof(mid) - 1);
                n += sizeof(mid) - 1;
                n += shim_put_decimal(out + n, (uint64_t)pid);
        }
        out[n++] = '}';
        out[n++] = '\n';
        return n;
}
