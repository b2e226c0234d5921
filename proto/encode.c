/* encode.c - the libc-only half of the segops wire format.
 *
 * This file owns everything about the wire format that needs no JSON
 * parser: the growable output buffer, JSON string escaping, printable
 * escaping for logs and error details, UTF-8 validation, version-4
 * UUIDs from caller-supplied random bytes, event id validation, the
 * batch envelope of SPEC section 4 and the stable names of rejection
 * reasons (time.c has the timestamps). It is linked into libshim too,
 * so it uses libc only, keeps no state and does no I/O.
 */
#include "proto.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffer ---- */

int proto_buf_reserve(struct proto_buf *b, size_t n)
{
        size_t need, cap;
        char *p;

        if (!b)
                return -EINVAL;
        if (n > SIZE_MAX - b->len)
                return -ENOMEM;
        need = b->len + n;
        if (need <= b->cap)
                return 0;
        cap = b->cap ? b->cap : 256;
        while (cap < need) {
                if (cap > SIZE_MAX / 2) {
                        cap = need;
                        break;
                }
                cap *= 2;
        }
        p = realloc(b->data, cap);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->cap = cap;
        return 0;
}

int proto_buf_append(struct proto_buf *b, const void *p, size_t n)
{
        int r;

        if (n == 0)
                return 0;
        r = proto_buf_reserve(b, n);
        if (r < 0)
                return r;
        memcpy(b->data + b->len, p, n);
        b->len += n;
        return 0;
}

int proto_buf_append_str(struct proto_buf *b, const char *s)
{
        if (!s)
                return -EINVAL;
        return proto_buf_append(b, s, strlen(s));
}

void proto_buf_reset(struct proto_buf *b)
{
        if (b)
                b->len = 0;
}

void proto_buf_shrink(struct proto_buf *b)
{
        char *p;

        if (!b || b->len == b->cap || b->len == 0)
                return;
        p = realloc(b->data, b->len);
        if (!p)
                return; /* still valid, only bigger than it needs */
        b->data = p;
        b->cap = b->len;
}

void proto_buf_free(struct proto_buf *b)
{
        if (!b)
                return;
        free(b->data);
        b->data = NULL;
        b->len = 0;
        b->cap = 0;
}

/* ---- escaping ---- */

static const char hexdigits[] = "0123456789abcdef";

/* The escape sequence for byte c (2 or 6 bytes) at out; 0 when c needs
 * none inside a JSON string. */
static size_t escape_byte(unsigned char c, char out[6])
{
        out[0] = '\\';
        switch (c) {
        case '"': out[1] = '"'; return 2;
        case '\\': out[1] = '\\'; return 2;
        case '\n': out[1] = 'n'; return 2;
        case '\t': out[1] = 't'; return 2;
        case '\r': out[1] = 'r'; return 2;
        case '\b': out[1] = 'b'; return 2;
        case '\f': out[1] = 'f'; return 2;
        default:
                if (c >= 0x20)
                        return 0;
                out[1] = 'u';
                out[2] = '0';
                out[3] = '0';
                out[4] = hexdigits[c >> 4];
                out[5] = hexdigits[c & 0xf];
                return 6;
        }
}

/* The one escaping loop: the n bytes at s as the inside of a JSON string
 * (no quotes) at out, which has room for 6 * n bytes. Runs that need no
 * escaping, the common case, are copied whole. Returns the bytes
 * written. */
static size_t escape_body(char *out, const char *s, size_t n)
{
        size_t i = 0, o = 0;

        while (i < n) {
                size_t start = i;
                unsigned char c;

                while (i < n && (c = (unsigned char)s[i]) >= 0x20 && c != '"' && c != '\\')
                        i++;
                memcpy(out + o, s + start, i - start);
                o += i - start;
                if (i == n)
                        break;
                o += escape_byte((unsigned char)s[i++], out + o);
        }
        return o;
}

size_t proto_json_escape_to(char *out, const char *s, size_t n)
{
        size_t o = 0;

        out[o++] = '"';
        o += escape_body(out + o, s, n);
        out[o++] = '"';
        return o;
}

/* proto_json_escape() escapes a long string piece by piece, each into room
 * reserved for its worst case: the buffer then grows by the string's
 * length plus at most one piece's worst case, not by six times the
 * string. */
#define ESCAPE_PIECE 512

int proto_json_escape(struct proto_buf *b, const char *s, size_t n)
{
        size_t entry, i = 0;
        int r;

        if (!b || (!s && n))
                return -EINVAL;
        entry = b->len;
        /* The common case (nothing to escape) grows the buffer once. */
        r = proto_buf_reserve(b, n + 2);
        if (r < 0)
                return r;
        b->data[b->len++] = '"';
        while (i < n) {
                size_t k = n - i < ESCAPE_PIECE ? n - i : ESCAPE_PIECE;

                r = proto_buf_reserve(b, 6 * k + 1); /* and the closing quote */
                if (r < 0) {
                        b->len = entry;
                        return r;
                }
                b->len += escape_body(b->data + b->len, s + i, k);
                i += k;
        }
        b->data[b->len++] = '"';
        return 0;
}

/* ---- printable text ---- */

/* The form of byte c in proto_printable()'s output (1, 2 or 4 bytes)
 * at e. */
static size_t printable_byte(unsigned char c, unsigned flags, char e[4])
{
        bool ascii = flags & PROTO_PRINTABLE_ASCII;

        if ((flags & PROTO_PRINTABLE_QUOTED) && (c == '"' || c == '\\')) {
                e[0] = '\\';
                e[1] = (char)c;
                return 2;
        }
        if (c >= 0x20 && c != 0x7f && !(ascii && (c > 0x7f || c == '\\'))) {
                e[0] = (char)c;
                return 1;
        }
        e[0] = '\\';
        e[1] = 'x';
        e[2] = hexdigits[c >> 4];
        e[3] = hexdigits[c & 0xf];
        return 4;
}

size_t proto_printable(char *out, size_t outsz, const char *s, size_t n, unsigned flags)
{
        /* Kept free after each byte: the NUL, and "..." when it may be cut. */
        size_t reserve = flags & PROTO_PRINTABLE_ELLIPSIS ? 4 : 1;
        size_t o = 0, i;

        if (outsz < reserve) {
                if (outsz > 0)
                        out[0] = '\0';
                return 0;
        }
        for (i = 0; i < n; i++) {
                char e[4];
                size_t w = printable_byte((unsigned char)s[i], flags, e);

                if (o + w + reserve > outsz)
                        break;
                memcpy(out + o, e, w);
                o += w;
        }
        if (i < n && (flags & PROTO_PRINTABLE_ELLIPSIS)) {
                memcpy(out + o, "...", 3);
                o += 3;
        }
        out[o] = '\0';
        return o;
}

/* ---- UTF-8 ---- */

bool proto_utf8_valid(const char *str, size_t n)
{
        const unsigned char *p = (const unsigned char *)str, *end = p + n;

        while (p < end) {
                uint64_t w;
                size_t k;

                /* Eight ASCII bytes at a time, as most text is. */
                if (end - p >= 8) {
                        memcpy(&w, p, 8);
                        if (!(w & UINT64_C(0x8080808080808080))) {
                                p += 8;
                                continue;
                        }
                }
                if (*p < 0x80) {
                        p++;
                        continue;
                }
                k = proto_utf8_seq(p, end);
                if (!k)
                        return false;
                p += k;
        }
        return true;
}

/* ---- ids ---- */

void proto_uuid_format(const uint8_t rnd[16], char out[PROTO_UUID_LEN + 1])
{
        size_t o = 0;

        for (int i = 0; i < 16; i++) {
                uint8_t v = rnd[i];

                if (i == 6)
                        v = (uint8_t)((v & 0x0f) | 0x40); /* version 4 */
                else if (i == 8)
                        v = (uint8_t)((v & 0x3f) | 0x80); /* RFC 4122 variant */
                if (i == 4 || i == 6 || i == 8 || i == 10)
                        out[o++] = '-';
                out[o++] = hexdigits[v >> 4];
                out[o++] = hexdigits[v & 0xf];
        }
        out[o] = '\0';
}

bool proto_event_id_valid(const char *s, size_t n)
{
        if (!s || n < 1 || n > PROTO_EVENT_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == ':' || c == '-'))
                        return false;
        }
        return true;
}

/* ---- batch envelope ---- */

int proto_batch_begin(struct proto_buf *b, const char *batch_id, int64_t sent_at_ms)
{
        char t[PROTO_TIME_LEN + 1];
        size_t entry;
        int r;

        if (!b || !batch_id)
                return -EINVAL;
        entry = b->len;
        proto_time_format(sent_at_ms, t);
        r = proto_buf_reserve(b, PROTO_BATCH_OVERHEAD);
        if (r < 0)
                goto fail;
        r = proto_buf_append_str(b, "{\"batch_id\":");
        if (r < 0)
                goto fail;
        r = proto_json_escape(b, batch_id, strlen(batch_id));
        if (r < 0)
                goto fail;
        r = proto_buf_append_str(b, ",\"sent_at\":\"");
        if (r < 0)
                goto fail;
        r = proto_buf_append(b, t, PROTO_TIME_LEN);
        if (r < 0)
                goto fail;
        r = proto_buf_append_str(b, "\",\"events\":[");
        if (r < 0)
                goto fail;
        return 0;
fail:
        b->len = entry;
        return r;
}

int proto_batch_set_sent_at(char *body, size_t len, int64_t sent_at_ms)
{
        static const char head[] = "{\"batch_id\":\"";
        static const char key[] = "\",\"sent_at\":\"";
        const size_t at = sizeof(head) - 1 + PROTO_UUID_LEN + sizeof(key) - 1;
        char t[PROTO_TIME_LEN + 1];

        if (!body || len < at + PROTO_TIME_LEN + 1 || memcmp(body, head, sizeof(head) - 1) != 0 ||
            memcmp(body + at - (sizeof(key) - 1), key, sizeof(key) - 1) != 0 ||
            body[at + PROTO_TIME_LEN] != '"')
                return -EINVAL;
        proto_time_format(sent_at_ms, t);
        memcpy(body + at, t, PROTO_TIME_LEN);
        return 0;
}

int proto_batch_add(struct proto_buf *b, const char *event, size_t n, bool first)
{
        int r;

        if (!b || !event || n == 0)
                return -EINVAL;
        r = proto_buf_reserve(b, n + 1);
        if (r < 0)
                return r;
        if (!first)
                b->data[b->len++] = ',';
        memcpy(b->data + b->len, event, n);
        b->len += n;
        return 0;
}

int proto_batch_end(struct proto_buf *b)
{
        return proto_buf_append(b, "]}", 2);
}

/* ---- reasons ---- */

const char *proto_reason_name(enum proto_reason r)
{
        static const char *const names[PROTO_REASON_COUNT] = {
                [PROTO_OK] = "ok",
                [PROTO_E_BAD_JSON] = "bad_json",
                [PROTO_E_NOT_OBJECT] = "not_object",
                [PROTO_E_BAD_UTF8] = "bad_utf8",
                [PROTO_E_NUL] = "nul",
                [PROTO_E_TOO_DEEP] = "too_deep",
                [PROTO_E_BAD_NUMBER] = "bad_number",
                [PROTO_E_DUPLICATE_KEY] = "duplicate_key",
                [PROTO_E_OVERSIZE] = "oversize",
                [PROTO_E_MISSING_FIELD] = "missing_field",
                [PROTO_E_WRONG_TYPE] = "wrong_type",
                [PROTO_E_BAD_LENGTH] = "bad_length",
                [PROTO_E_UNKNOWN_FIELD] = "unknown_field",
                [PROTO_E_BAD_TIMESTAMP] = "bad_timestamp",
                [PROTO_E_BAD_EVENT_ID] = "bad_event_id",
                [PROTO_E_BAD_TYPE] = "bad_type",
                [PROTO_E_UNKNOWN_OP] = "unknown_op",
                [PROTO_E_BAD_VALUE] = "bad_value",
                [PROTO_E_OP_NOT_ALLOWED] = "op_not_allowed",
                [PROTO_E_NOMEM] = "nomem",
        };

        if ((unsigned)r >= PROTO_REASON_COUNT || !names[r])
                return "unknown";
        return names[r];
}
