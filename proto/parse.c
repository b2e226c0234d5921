/* parse.c - proto_parse(): one line to a parsed message, the slow path.
 *
 * proto_parse() is the per-event hot path of the daemon: it takes one
 * NDJSON line exactly as a client sent it and hands it to the
 * allocation-free fast path (fast.c), which takes the common message.
 * Everything else comes here, every rejection included: this file reads
 * the line into a jansson tree, after checking what jansson cannot be
 * trusted with (the size limit, raw NUL bytes, nesting deep enough to
 * cost jansson's recursion its stack) and widening integers beyond int64
 * that SPEC section 2 takes as doubles; it maps jansson's errors to the
 * stable reasons, then lets message.c judge the op or event and
 * normalise.c write it.
 */
#include "slow-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- error details ---- */

int proto__fail(struct proto_error *err, enum proto_reason reason, const char *fmt, ...)
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

/* ---- integers beyond int64 ---- */

/* Is the integer literal of n digits at d (no sign, no leading zeros)
 * outside int64? neg: it had a minus sign. */
static bool beyond_int64(const char *d, size_t n, bool neg)
{
        if (n != 19)
                return n > 19;
        return memcmp(d, neg ? "9223372036854775808" : "9223372036854775807", 19) > 0;
}

static size_t skip_digits(const char *s, size_t len, size_t i)
{
        while (i < len && s[i] >= '0' && s[i] <= '9')
                i++;
        return i;
}

/* The number token at s[i] (a '-' or a digit): sign, digits, fraction,
 * exponent. Returns its end; *ret_big says whether it is an integer
 * literal beyond int64 (no fraction, no exponent, no leading zero). */
static size_t scan_number(const char *s, size_t len, size_t i, bool *ret_big)
{
        bool neg = s[i] == '-', plain = true;
        size_t d0, nd;

        if (neg)
                i++;
        d0 = i;
        i = skip_digits(s, len, i);
        nd = i - d0;
        if (i < len && s[i] == '.') {
                plain = false;
                i = skip_digits(s, len, i + 1);
        }
        if (i < len && (s[i] == 'e' || s[i] == 'E')) {
                plain = false;
                i++;
                if (i < len && (s[i] == '+' || s[i] == '-'))
                        i++;
                i = skip_digits(s, len, i);
        }
        *ret_big = plain && nd > 0 && s[d0] != '0' && beyond_int64(s + d0, nd, neg);
        return i;
}

/* The end of the string whose opening quote is at s[i]: just past its
 * closing quote, or len when it has none. */
static size_t string_end(const char *s, size_t len, size_t i)
{
        for (i++; i < len; i++) {
                if (s[i] == '\\')
                        i++; /* the escaped char cannot end it */
                else if (s[i] == '"')
                        return i + 1;
        }
        return len;
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

        if (!w)
                return NULL;
        while (i < len) {
                bool big = false;
                size_t end;

                if (s[i] == '"')
                        end = string_end(s, len, i);
                else if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9'))
                        end = scan_number(s, len, i, &big);
                else
                        end = i + 1;
                memcpy(w + o, s + i, end - i);
                o += end - i;
                i = end;
                if (big) {
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

/* ---- from a line to a tree ---- */

static bool is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Drop the whitespace around the message. */
static void trim(const char **line, size_t *len)
{
        while (*len > 0 && is_space((*line)[0])) {
                (*line)++;
                (*len)--;
        }
        while (*len > 0 && is_space((*line)[*len - 1]))
                (*len)--;
}

/* jansson's reading of the line; a second one, with big integers
 * widened, when it refused one. NULL with je filled on failure. */
static json_t *load(const char *line, size_t len, json_error_t *je)
{
        const size_t flags = JSON_REJECT_DUPLICATES | JSON_DECODE_ANY;
        json_t *root = json_loadb(line, len, flags, je);
        size_t wlen;
        char *w;

        if (root || json_error_code(je) != json_error_numeric_overflow)
                return root;
        /* Integers beyond int64 are taken as doubles; a number too big
         * for a double (1e400) stays an error. The second reading's
         * error is the message's own (a duplicate key, a \u0000 ... after
         * the big integer): it replaces the first's "too big integer". */
        w = widen_big_ints(line, len, &wlen);
        if (!w)
                return NULL;
        root = json_loadb(w, wlen, flags, je);
        free(w);
        return root;
}

/* The JSON value of a trimmed, non-empty line: 0 and *ret_root, or the
 * fault (pre-scan first, then jansson's) in err. */
static int read_tree(const char *line, size_t len, json_t **ret_root, struct proto_error *err)
{
        enum proto_reason why = prescan(line, len);
        char shown[sizeof(err->detail) - 24];
        json_error_t je;
        json_t *root;

        if (why == PROTO_E_NUL)
                return proto__fail(err, why, "raw NUL byte in message");
        if (why == PROTO_E_TOO_DEEP)
                return proto__fail(err, why, "nesting deeper than %d levels", PROTO_MAX_DEPTH);
        root = load(line, len, &je);
        if (!root) {
                /* jansson quotes input near the error: keep it printable. */
                proto_printable(shown, sizeof(shown), je.text, strnlen(je.text, sizeof(je.text)),
                                PROTO__SHOWN);
                return proto__fail(err, reason_of_jansson(&je), "%s at byte %d", shown,
                                   je.position);
        }
        *ret_root = root;
        return 0;
}

/* ---- the entry points ---- */

int proto_parse_slow(const char *line, size_t len, size_t max_bytes, int64_t now_ms,
                     const uint8_t rnd[16], struct proto_buf *out, struct proto_msg *msg,
                     struct proto_error *err)
{
        json_t *root, *opv;
        size_t entry;
        int r;

        if ((!line && len) || !rnd || !out || !msg)
                return proto__fail(err, PROTO_E_BAD_VALUE, "invalid arguments");
        entry = out->len;
        if (proto_message_len(line, len) > max_bytes)
                return proto__fail(err, PROTO_E_OVERSIZE,
                                   "message of %zu bytes exceeds the limit of %zu", len, max_bytes);
        trim(&line, &len);
        if (len == 0)
                return proto__fail(err, PROTO_E_BAD_JSON, "empty message");
        r = read_tree(line, len, &root, err);
        if (r < 0)
                return r;

        if (!json_is_object(root))
                r = proto__fail(err, PROTO_E_NOT_OBJECT, "message must be a JSON object");
        else if ((opv = json_object_get(root, "op")))
                r = proto__parse_op(root, opv, msg, err);
        else
                r = proto__parse_event(root, json_object_get(root, "type"), now_ms, rnd, out, msg,
                                       err);
        if (r >= 0 && err) {
                err->reason = PROTO_OK;
                err->detail[0] = '\0';
        }
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
