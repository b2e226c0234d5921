/* fuzz-proto.c - libFuzzer target for the line parser (proto/): any
 * bytes, as a client on the host could send them as one line.
 *
 * Invariants, for every input, at the default limit and at one byte
 * below the message's own length:
 *   - the fast path either declines (PROTO_FAST_UNHANDLED, with out, msg
 *     and err untouched) or accepts exactly as the slow path does: same
 *     return, same output bytes, same msg, same err (it never rejects,
 *     by design: every rejection is the slow path's, proto/fast.c);
 *   - proto_parse() gives the slow path's answer, byte for byte;
 *   - a rejection leaves out as it was and says why in printable ASCII;
 *   - an accepted event is one line of valid UTF-8 that parses again,
 *     as a track event, to exactly the same bytes (normalising is
 *     idempotent), through the fast path when that takes it.
 */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parse-internal.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW_MS INT64_C(1795755600123) /* 2026-11-27T05:00:00.123Z */
#define PREFIX "PREFIX"

static const uint8_t rnd[16] = { 0xde, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xff };

typedef int (*parse_fn)(const char *, size_t, size_t, int64_t, const uint8_t *, struct proto_buf *,
                        struct proto_msg *, struct proto_error *);

struct run {
        int r;
        struct proto_buf out;
        struct proto_msg msg;
        struct proto_error err;
};

/* One parser from a known state: PREFIX in out, msg and err filled
 * with a pattern, so "untouched" and "the same" are memcmp. */
static void run_one(parse_fn fn, const char *in, size_t len, size_t max, struct run *ru)
{
        memset(&ru->out, 0, sizeof(ru->out));
        assert(proto_buf_append_str(&ru->out, PREFIX) == 0);
        memset(&ru->msg, 0xa5, sizeof(ru->msg));
        memset(&ru->err, 0x5a, sizeof(ru->err));
        ru->r = fn(in, len, max, NOW_MS, rnd, &ru->out, &ru->msg, &ru->err);
}

static void assert_same(const struct run *a, const struct run *b)
{
        assert(a->r == b->r);
        assert(a->out.len == b->out.len && !memcmp(a->out.data, b->out.data, a->out.len));
        assert(!memcmp(&a->msg, &b->msg, sizeof(a->msg)));
        assert(!memcmp(&a->err, &b->err, sizeof(a->err)));
}

static void free_run(struct run *ru)
{
        proto_buf_free(&ru->out);
}

static void check_rejection(const struct run *ru)
{
        size_t n = strnlen(ru->err.detail, sizeof(ru->err.detail));

        assert(ru->r == -EINVAL || ru->r == -ENOMEM);
        assert(ru->err.reason > PROTO_OK && ru->err.reason < PROTO_REASON_COUNT);
        assert(n < sizeof(ru->err.detail));
        for (size_t i = 0; i < n; i++)
                assert(ru->err.detail[i] >= 0x20 && ru->err.detail[i] < 0x7f);
        assert(ru->out.len == strlen(PREFIX) && !memcmp(ru->out.data, PREFIX, ru->out.len));
}

static bool has(const char *s, size_t n, const char *lit)
{
        return memmem(s, n, lit, strlen(lit)) != NULL;
}

/* The event written after PREFIX must read back as itself. */
static void check_event(const struct run *ru)
{
        static const char head[] = "{\"event_id\":\"";
        const char *ev = ru->out.data + strlen(PREFIX);
        size_t n = ru->out.len - strlen(PREFIX);
        struct run again, fast;

        assert(n > sizeof(head) && !memcmp(ev, head, sizeof(head) - 1) && ev[n - 1] == '}');
        assert(!memchr(ev, '\n', n) && !memchr(ev, '\0', n) && !memchr(ev, '\r', n));
        assert(proto_utf8_valid(ev, n));
        assert(has(ev, n, "\",\"user_id\":\"") && has(ev, n, "\",\"event_type\":\"") &&
               has(ev, n, "\",\"occurred_at\":\"") && has(ev, n, "\",\"payload\":{"));

        run_one(proto_parse_slow, ev, n, n, &again);
        assert(again.r == 0 && again.msg.kind == PROTO_MSG_EVENT);
        assert(again.out.len == ru->out.len && !memcmp(again.out.data, ru->out.data, ru->out.len));
        run_one(proto_parse_fast, ev, n, n, &fast);
        if (fast.r != PROTO_FAST_UNHANDLED)
                assert_same(&fast, &again);
        free_run(&again);
        free_run(&fast);
}

static void diff(const char *in, size_t len, size_t max)
{
        struct run fast, slow, full;
        struct proto_msg pristine_msg;
        struct proto_error pristine_err;

        run_one(proto_parse_fast, in, len, max, &fast);
        run_one(proto_parse_slow, in, len, max, &slow);
        run_one(proto_parse, in, len, max, &full);

        if (fast.r == PROTO_FAST_UNHANDLED) {
                memset(&pristine_msg, 0xa5, sizeof(pristine_msg));
                memset(&pristine_err, 0x5a, sizeof(pristine_err));
                assert(fast.out.len == strlen(PREFIX));
                assert(!memcmp(&fast.msg, &pristine_msg, sizeof(pristine_msg)));
                assert(!memcmp(&fast.err, &pristine_err, sizeof(pristine_err)));
        } else {
                /* The fast path never rejects: accepting is its only answer. */
                assert(fast.r == 0);
                assert_same(&fast, &slow);
        }
        assert_same(&full, &slow);

        if (slow.r < 0)
                check_rejection(&slow);
        else if (slow.msg.kind == PROTO_MSG_EVENT)
                check_event(&slow);
        else
                assert(slow.msg.kind == PROTO_MSG_OP && slow.out.len == strlen(PREFIX));
        free_run(&fast);
        free_run(&slow);
        free_run(&full);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* An exact-size copy, so the sanitizers catch a read past it. */
        char *in = malloc(size ? size : 1);
        size_t mlen;

        if (!in)
                return 0;
        memcpy(in, data, size);
        diff(in, size, PROTO_MAX_MESSAGE_BYTES);
        /* One byte over the limit: both must refuse (or decline). */
        mlen = proto_message_len(in, size);
        if (mlen > 0)
                diff(in, size, mlen - 1);
        free(in);
        return 0;
}
