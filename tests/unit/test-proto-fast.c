/* test-proto-fast.c - differential tests of proto's fast path.
 *
 * proto_parse_fast() may decline any message, but what it accepts it
 * must accept exactly as proto_parse_slow() does: same return, same
 * output bytes, same msg and err. Every input here is run through both
 * halves alone (and through proto_parse() itself, which must always
 * equal the slow path); a declined message must leave out, msg and err
 * untouched. The inputs are hand-written good and hostile messages,
 * randomly generated valid ones, and tens of thousands of random
 * mutations of both, from a fixed-seed PRNG so every run is the same.
 * The common shapes (the benchmark's message, the documented examples)
 * must actually take the fast path, or it would be pointless.
 */
#include "parse-internal.h"
#include "proto.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW_MS INT64_C(1795755600123) /* 2026-11-27T05:00:00.123Z */
#define PREFIX "PREFIX"
#define MAX_INPUT 4096 /* generated and mutated inputs stay below this */
#define MUTATIONS 30000

static const uint8_t rnd[16] = { 0xde, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xff };

#define X16 "xxxxxxxxxxxxxxxx"
#define X64 X16 X16 X16 X16
#define X128 X64 X64
#define X256 X128 X128
#define EV(extra) "{\"user_id\":\"u1\",\"event_type\":\"e\"" extra "}"
#define PL(p) EV(",\"payload\":" p)
#define EV_PREFIX_P "{\"user_id\":\"u1\",\"event_type\":\"e\",\"payload\":"

/* ---- a deterministic PRNG (splitmix64) ---- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
        uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static size_t rng_below(size_t n)
{
        return n ? (size_t)(rng_next() % n) : 0;
}

/* ---- the differential check ---- */

struct stats {
        unsigned runs, handled;
};

/* For failure messages: the input with non-printable bytes as \xHH. */
static const char *shown(const char *s, size_t n)
{
        static char buf[600];
        size_t o = 0;

        for (size_t i = 0; i < n && o + 8 < sizeof(buf); i++) {
                unsigned char c = (unsigned char)s[i];

                if (c >= 0x20 && c < 0x7f && c != '\\')
                        buf[o++] = (char)c;
                else
                        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "\\x%02x", c);
        }
        buf[o] = '\0';
        return buf;
}

struct run {
        int r;
        struct proto_buf out;
        struct proto_msg msg;
        struct proto_error err;
};

typedef int (*parse_fn)(const char *, size_t, size_t, int64_t, const uint8_t *, struct proto_buf *,
                        struct proto_msg *, struct proto_error *);

/* Run one parser from a known state: PREFIX already in out, msg and err
 * filled with a pattern, so "untouched" and "the same" are memcmp. */
static void run_one(parse_fn fn, const char *in, size_t len, size_t max, bool with_err,
                    struct run *ru)
{
        memset(&ru->out, 0, sizeof(ru->out));
        ck_assert_int_eq(proto_buf_append_str(&ru->out, PREFIX), 0);
        memset(&ru->msg, 0xa5, sizeof(ru->msg));
        memset(&ru->err, 0x5a, sizeof(ru->err));
        ru->r = fn(in, len, max, NOW_MS, rnd, &ru->out, &ru->msg, with_err ? &ru->err : NULL);
}

static void assert_same(const struct run *a, const struct run *b, const char *what, const char *in,
                        size_t len)
{
        ck_assert_msg(a->r == b->r, "%s: return %d vs %d for %s", what, a->r, b->r, shown(in, len));
        ck_assert_msg(a->out.len == b->out.len && !memcmp(a->out.data, b->out.data, a->out.len),
                      "%s: output differs for %s:\n%.*s\n%.*s", what, shown(in, len),
                      (int)a->out.len, a->out.data, (int)b->out.len, b->out.data);
        ck_assert_msg(!memcmp(&a->msg, &b->msg, sizeof(a->msg)), "%s: msg differs for %s", what,
                      shown(in, len));
        ck_assert_msg(a->err.reason == b->err.reason &&
                              !memcmp(a->err.detail, b->err.detail, sizeof(a->err.detail)),
                      "%s: err differs for %s: %s vs %s", what, shown(in, len), a->err.detail,
                      b->err.detail);
}

/* Compare fast, slow and proto_parse on one input; true when the fast
 * path handled it. */
static bool diff_max(const char *in, size_t len, size_t max, bool with_err, struct stats *st)
{
        struct run fast, slow, full;
        struct proto_msg pristine_msg;
        struct proto_error pristine_err;
        bool handled;
        /* An exact-size copy, so a sanitizer catches any read past it. */
        char *copy = malloc(len ? len : 1);

        ck_assert_ptr_nonnull(copy);
        memcpy(copy, in, len);
        run_one(proto_parse_fast, copy, len, max, with_err, &fast);
        run_one(proto_parse_slow, copy, len, max, with_err, &slow);
        run_one(proto_parse, copy, len, max, with_err, &full);
        free(copy);

        handled = fast.r != PROTO_FAST_UNHANDLED;
        if (handled) {
                ck_assert_msg(fast.r == 0, "fast path returned %d for %s", fast.r, shown(in, len));
                assert_same(&fast, &slow, "fast vs slow", in, len);
        } else {
                memset(&pristine_msg, 0xa5, sizeof(pristine_msg));
                memset(&pristine_err, 0x5a, sizeof(pristine_err));
                ck_assert_msg(fast.out.len == strlen(PREFIX) &&
                                      !memcmp(fast.out.data, PREFIX, strlen(PREFIX)),
                              "declined but wrote out for %s", shown(in, len));
                ck_assert_msg(!memcmp(&fast.msg, &pristine_msg, sizeof(pristine_msg)) &&
                                      !memcmp(&fast.err, &pristine_err, sizeof(pristine_err)),
                              "declined but touched msg/err for %s", shown(in, len));
        }
        assert_same(&full, &slow, "proto_parse vs slow", in, len);
        /* On failure the slow path leaves out as it found it. */
        if (slow.r < 0)
                ck_assert_uint_eq(slow.out.len, strlen(PREFIX));
        proto_buf_free(&fast.out);
        proto_buf_free(&slow.out);
        proto_buf_free(&full.out);
        if (st) {
                st->runs++;
                st->handled += handled;
        }
        return handled;
}

static bool diff(const char *in, size_t len, struct stats *st)
{
        return diff_max(in, len, PROTO_MAX_MESSAGE_BYTES, true, st);
}

static bool diff_str(const char *in, struct stats *st)
{
        return diff(in, strlen(in), st);
}

/* ---- hand-written inputs ---- */

/* Good messages of the common shape: the fast path must take them. */
static const char *const must_handle[] = {
        /* bench/sender.c and bench/proto-bench.c */
        "{\"user_id\":\"user-1\",\"event_type\":\"bench_event\",\"event_id\":"
        "\"e1\",\"payload\":{\"k\":\"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\","
        "\"n\":12}}",
        "{\"user_id\":\"user-417\",\"event_type\":\"bench_event\",\"event_id\":"
        "\"e123417\",\"payload\":{\"seq\":123417,\"pad\":\"" X64 X16 "\"}}",
        /* PROTOCOL.md and README examples */
        "{\"user_id\":\"u1\",\"event_type\":\"deploy\",\"payload\":{\"sha\":"
        "\"abc\"}}",
        "{\"type\":\"identify\",\"user_id\":\"u1\",\"traits\":{\"plan\":"
        "\"pro\"}}",
        "{\"user_id\":\"u1\",\"event_type\":\"signup\",\"occurred_at\":"
        "\"2026-11-27T07:00:00.123456+02:00\",\"payload\":{\"n\":1}}",
        /* minimal, and each optional field */
        EV(""),
        "{\"event_type\":\"e\",\"user_id\":\"u1\"}",
        EV(",\"type\":\"track\""),
        "{\"type\":\"track\",\"user_id\":\"u\",\"event_type\":\"e\"}",
        EV(",\"event_id\":\"a.B_c:d-9\""),
        EV(",\"event_id\":\"" X64 "\""),
        EV(",\"occurred_at\":\"2026-11-27T05:00:00Z\""),
        EV(",\"occurred_at\":\"2026-11-27t05:00:00z\""),
        EV(",\"occurred_at\":\"2026-11-27 05:00:00.1-05:30\""),
        EV(",\"occurred_at\":\"2016-12-31T23:59:60Z\""),
        EV(",\"occurred_at\":\"0000-01-01T00:00:00Z\""),
        EV(",\"occurred_at\":\"9999-12-31T23:59:59.999999Z\""),
        EV(",\"occurred_at\":\"2024-02-29T12:00:00.5Z\""),
        "{\"payload\":{},\"event_id\":\"x\",\"occurred_at\":"
        "\"2026-01-01T00:00:00Z\",\"event_type\":\"e\",\"user_id\":\"u\","
        "\"type\":\"track\"}",
        /* identify */
        "{\"type\":\"identify\",\"user_id\":\"u1\"}",
        "{\"user_id\":\"u1\",\"type\":\"identify\",\"traits\":{}}",
        "{\"type\":\"identify\",\"user_id\":\"u1\",\"event_id\":\"i-1\","
        "\"occurred_at\":\"2026-11-27T05:00:00+01:00\",\"traits\":{\"a\":[1,"
        "{\"b\":null}]}}",
        /* lengths at their limits */
        "{\"user_id\":\"" X256 "\",\"event_type\":\"" X128 "\"}",
        "{\"user_id\":\"u\",\"event_type\":\"" X64 "\xc3\xa9" X16 X16 X16 "xxxxxxxxxxxxxx\"}",
        /* every value type, nesting, empty containers */
        PL("{}"),
        PL("{\"a\":[]}"),
        PL("{\"a\":{}}"),
        PL("{\"t\":true,\"f\":false,\"n\":null}"),
        PL("{\"i\":0,\"j\":-1,\"k\":7,\"l\":123456789012345678,"
           "\"m\":-123456789012345678}"),
        PL("{\"a\":[1,2,[3,[4,[]]],{\"b\":{\"c\":[true,false,null]}}]}"),
        PL("{\"s\":\"\",\"t\":\" \",\"u\":\"a b  c\"}"),
        PL("{\"\":1}"),
        PL("{\"a\":{\"x\":1},\"b\":{\"x\":2},\"x\":3}"),
        PL("{\"a\":{\"b\":1},\"b\":2}"),
        PL("{\"l\":[{\"k\":1},{\"k\":2},{\"k\":{\"k\":3}}]}"),
        PL("{\"user_id\":\"inner\",\"payload\":{\"payload\":1}}"),
        PL("{\"a\":1,\"ab\":2,\"abc\":3,\"b\":4}"),
        PL("{\"brackets\":\"{[}]\",\"colon\":\":,\"}"),
        PL("{\"slash\":\"a/b\",\"apos\":\"it's\",\"del\":\"\x7f\"}"),
        /* UTF-8 at the edges of every length */
        PL("{\"u\":\"\xc2\x80\xdf\xbf\"}"),                 /* U+0080 U+07FF */
        PL("{\"u\":\"\xe0\xa0\x80\xed\x9f\xbf\"}"),         /* U+0800 U+D7FF */
        PL("{\"u\":\"\xee\x80\x80\xef\xbf\xbf\"}"),         /* U+E000 U+FFFF */
        PL("{\"u\":\"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"}"), /* U+10000 max */
        PL("{\"caf\xc3\xa9\":\"\xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\"}"),
        "{\"user_id\":\"\xc3\xbc\xe2\x82\xac\",\"event_type\":\"\xf0\x9f\x9a"
        "\x80\"}",
        /* whitespace: around, between, inside (kept in strings) */
        "  " EV("") "  ",
        EV("") "\r",
        "\t\r\n" EV("") "\r\n",
        "{ \"user_id\" : \"u1\" , \"event_type\" : \"e\" , \"payload\" : { "
        "\"a\" : [ 1 , 2 , { \"b\" : \" x y \" } ] , \"c\" : { } } }",
        "{\n\t\"user_id\":\"u1\",\n\t\"event_type\":\"e\",\n\t\"payload\":"
        "{\n\t\t\"k\":\t\"v\"\r\n\t}\n}",
        PL("{\"a\":[ ],\"b\":{ },\"c\":[\t1\t]}"),
        PL(" {\"a\":1} "),
};

/* Valid messages the fast path leaves to the slow path by design; they
 * must still agree (declined or not is not asserted except for ops). */
static const char *const valid_other[] = {
        PL("{\"s\":\"a\\nb\"}"),
        PL("{\"s\":\"\\u00e9\\/\\\"\\\\\"}"),
        PL("{\"s\\u0041\":1}"),
        PL("{\"r\":1.0}"),
        PL("{\"r\":1.5,\"e\":1e3,\"E\":2E-2,\"z\":0.0}"),
        PL("{\"z\":-0}"),
        PL("{\"z\":-0.0}"),
        PL("{\"big\":1234567890123456789}"),
        PL("{\"big\":9223372036854775807}"),
        PL("{\"big\":-9223372036854775808}"),
        "{\"user_id\":\"u\\u0031\",\"event_type\":\"e\"}",
        EV(",\"occurred_at\":1700000000"),
        EV(",\"occurred_at\":1.001"),
        EV(",\"occurred_at\":-1.5"),
        "{\"op\":\"ping\"}",
        "{\"op\":\"stats\"}",
        "{\"op\":\"flush\",\"timeout_ms\":5}",
        "{\"op\":\"set_user\",\"user_id\":\"u\",\"user_id_sig\":\"s\"}",
        "{\"op\":\"reset_session\"}",
        "{\"user_id\":\"u\",\"op\":\"ping\"}",
};

/* Hostile and broken messages: both must agree (the fast path declines
 * each, or the diff fails). */
static const char *const hostile[] = {
        "",
        " ",
        "\r",
        "{",
        "}",
        "[]",
        "{}",
        "null",
        "true",
        "1",
        "\"x\"",
        "{\"user_id\":\"u1\"",
        EV("") " x",
        EV("") "{}",
        EV("") ",",
        EV("") "\n" EV(""),
        "{\"user_id\":\"u1\",}",
        "{,\"user_id\":\"u1\"}",
        "{\"user_id\":\"u1\",,\"event_type\":\"e\"}",
        "{\"user_id\" \"u1\",\"event_type\":\"e\"}",
        "{\"user_id\"::\"u1\",\"event_type\":\"e\"}",
        "{'user_id':'u1','event_type':'e'}",
        "{user_id:\"u1\",\"event_type\":\"e\"}",
        "{\"user_id\":\"u1\",\"event_type\":\"e\"",
        "{\"user_id\":\"u1\",\"event_type\":\"e}",
        "{\"user_id\":\"u1\",\"event_type\":e}",
        "[" EV("") "]",
        "\xef\xbb\xbf" EV(""), /* a BOM is not whitespace */
        "\x0b" EV(""),
        "\x0c" EV(""),
        "\xc2\xa0" EV(""),
        PL("{\"n\":NaN}"),
        PL("{\"n\":Infinity}"),
        PL("{\"n\":01}"),
        PL("{\"n\":-}"),
        PL("{\"n\":+1}"),
        PL("{\"n\":1.}"),
        PL("{\"n\":.5}"),
        PL("{\"n\":1e}"),
        PL("{\"n\":0x10}"),
        PL("{\"n\":--1}"),
        PL("{\"n\":1 2}"),
        PL("{\"n\":00}"),
        PL("{\"n\":-01}"),
        PL("{\"n\":1e400}"),
        PL("{\"n\":99999999999999999999999}"),
        PL("{\"n\":-9223372036854775809}"),
        PL("{\"n\":9223372036854775808}"),
        /* a big integer (read again as a double) and another fault */
        EV(",\"payload\":{\"n\":99999999999999999999999},\"user_id\":\"u2\""),
        PL("{\"n\":99999999999999999999999,\"n\":1}"),
        PL("{\"n\":99999999999999999999999,\"s\":\"\\u0000\"}"),
        PL("{\"n\":[18446744073709551616],\"k\\u0000\":1}"),
        PL("{\"n\":99999999999999999999999,\"s\":\"\xc3\"}"),
        PL("{\"n\":99999999999999999999999,}"),
        PL("{\"t\":tru}"),
        PL("{\"t\":truee}"),
        PL("{\"t\":True}"),
        PL("{\"t\":nul}"),
        PL("{\"t\":nulll}"),
        PL("{\"t\":falsey}"),
        PL("{\"a\":[1,]}"),
        PL("{\"a\":[,1]}"),
        PL("{\"a\":[1 2]}"),
        PL("{\"a\":{\"b\"}}"),
        PL("{\"a\":{\"b\":}}"),
        PL("{\"a\":{1:2}}"),
        PL("{\"a\":[}"),
        PL("{\"a\":{]}"),
        PL("{\"a\":[1}"),
        PL("{\"a\":{\"b\":1]}"),
        PL("{\"a\":1,}"),
        PL("{\"a\":1"),
        PL("{\"a\":1}}"),
        PL("{\"a\":\"x}"),
        PL("{\"s\":\"a\x01z\"}"),
        PL("{\"s\":\"a\tz\"}"),
        PL("{\"s\":\"a\nz\"}"),
        PL("{\"s\x1f\":1}"),
        PL("{\"s\":\"\\ud800\"}"),
        PL("{\"s\":\"\\udc00\\ud800\"}"),
        PL("{\"s\":\"\\q\"}"),
        PL("{\"s\":\"\\u12\"}"),
        PL("{\"s\":\"\\\"}"),
        PL("{\"s\":\"\\u0000\"}"),
        PL("{\"a\\u0000b\":1}"),
        "{\"user_id\":\"\xc0\xaf\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xc1\xbf\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xe0\x80\xaf\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xe0\x9f\xbf\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xf0\x80\x80\xaf\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xf0\x8f\xbf\xbf\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xed\xa0\x80\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xed\xbf\xbf\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xed\xa0\xbd\xed\xb8\x80\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xe2\x82\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xe2\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xf0\x9f\x98\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\x80\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xbf\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xfe\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xff\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xf5\x80\x80\x80\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xf4\x90\x80\x80\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xf8\x88\x80\x80\x80\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xc3\x28\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xe2\x28\xa1\",\"event_type\":\"e\"}",
        "{\"user_id\":\"\xf0\x90\x28\xbc\",\"event_type\":\"e\"}",
        "{\"user_id\":\"u\",\"event_type\":\"e\xc3\"}",
        PL("{\"k\xc3\":1}"),
        "{\"\xc3\":1}",
        "\xc3" EV(""),
        EV("") "\xc3",
        "{\xc3\xa9:1}",
        /* duplicates */
        EV(",\"user_id\":\"u2\""),
        EV(",\"event_type\":\"e\""),
        EV(",\"payload\":{},\"payload\":{}"),
        EV(",\"type\":\"track\",\"type\":\"track\""),
        PL("{\"a\":1,\"a\":2}"),
        PL("{\"a\":1,\"b\":2,\"a\":3}"),
        PL("{\"x\":[{\"b\":1,\"b\":1}]}"),
        PL("{\"a\":{\"b\":{\"c\":1,\"c\":1}}}"),
        PL("{\"a\":{\"b\":1},\"a\":{\"b\":1}}"),
        PL("{\"\":1,\"\":2}"),
        PL("{\"\xc3\xa9\":1,\"\xc3\xa9\":2}"),
        PL("{\"a\":1,\"\\u0061\":2}"),
        /* fields */
        EV(",\"properties\":{\"a\":1}"),
        EV(",\"traits\":{}"),
        EV(",\"timeout_ms\":5"),
        EV(",\"\":1"),
        EV(",\"User_id\":\"u\""),
        EV(",\"user_id_sig\":\"s\""),
        EV(",\"op\":\"ping\""),
        "{\"event_type\":\"e\"}",
        "{\"user_id\":\"u1\"}",
        "{\"user_id\":1,\"event_type\":\"e\"}",
        "{\"user_id\":null,\"event_type\":\"e\"}",
        "{\"user_id\":[\"u\"],\"event_type\":\"e\"}",
        "{\"user_id\":\"u\",\"event_type\":{}}",
        "{\"user_id\":\"u\",\"event_type\":true}",
        PL("null"),
        PL("[]"),
        PL("\"{}\""),
        PL("1"),
        PL("[{}]"),
        EV(",\"event_id\":12"),
        EV(",\"event_id\":null"),
        EV(",\"occurred_at\":true"),
        EV(",\"occurred_at\":null"),
        EV(",\"occurred_at\":[1]"),
        EV(",\"occurred_at\":{}"),
        EV(",\"type\":1"),
        EV(",\"type\":null"),
        EV(",\"type\":\"page\""),
        EV(",\"type\":\"Track\""),
        EV(",\"type\":\"\""),
        EV(",\"type\":\"track \""),
        EV(",\"type\":\"trac\""),
        EV(",\"type\":\"identify\""),
        "{\"user_id\":\"\",\"event_type\":\"e\"}",
        "{\"user_id\":\"" X256 "x\",\"event_type\":\"e\"}",
        "{\"user_id\":\"u\",\"event_type\":\"\"}",
        "{\"user_id\":\"u\",\"event_type\":\"" X128 "x\"}",
        "{\"user_id\":\"u\",\"event_type\":\"" X64 "\xc3\xa9" X16 X16 X16 "xxxxxxxxxxxxxxx\"}",
        EV(",\"event_id\":\"\""),
        EV(",\"event_id\":\"" X64 "x\""),
        EV(",\"event_id\":\"a b\""),
        EV(",\"event_id\":\"a/b\""),
        EV(",\"event_id\":\"caf\xc3\xa9\""),
        EV(",\"event_id\":\"a\\nb\""),
        EV(",\"occurred_at\":\"2026-13-01T00:00:00Z\""),
        EV(",\"occurred_at\":\"2023-02-29T00:00:00Z\""),
        EV(",\"occurred_at\":\"2026-11-27T05:00:00\""),
        EV(",\"occurred_at\":\"2026-11-27T24:00:00Z\""),
        EV(",\"occurred_at\":\"2026-11-27T05:00:00+24:00\""),
        EV(",\"occurred_at\":\"0000-01-01T00:00:00+00:01\""),
        EV(",\"occurred_at\":\"9999-12-31T23:59:59-00:01\""),
        EV(",\"occurred_at\":\"\""),
        EV(",\"occurred_at\":\"yesterday\""),
        EV(",\"occurred_at\":\"2026-11-27T05:00:00Z \""),
        EV(",\"occurred_at\":253402300800"),
        EV(",\"occurred_at\":1e300"),
        EV(",\"occurred_at\":-9223372036854775808"),
        "{\"type\":\"identify\",\"user_id\":\"u\",\"event_type\":\"e\"}",
        "{\"type\":\"identify\",\"user_id\":\"u\",\"payload\":{}}",
        "{\"type\":\"identify\",\"user_id\":\"u\",\"traits\":[]}",
        "{\"type\":\"identify\",\"user_id\":\"u\",\"traits\":null}",
        "{\"type\":\"identify\",\"traits\":{}}",
        "{\"type\":\"identify\",\"user_id\":\"\"}",
        "{\"type\":\"identify\",\"user_id\":\"u\",\"occurred_at\":\"x\"}",
        "{\"op\":1}",
        "{\"op\":null}",
        "{\"op\":\"launch\"}",
        "{\"op\":\"\"}",
        "{\"op\":\"ping\",\"timeout_ms\":5}",
        "{\"op\":\"flush\",\"timeout_ms\":-1}",
        "{\"op\":\"set_user\"}",
};

/* Inputs with a raw NUL, which C strings cannot hold. */
struct raw {
        const char *s;
        size_t n;
};
#define RAW(s)                                                                                     \
        {                                                                                          \
                s, sizeof(s) - 1                                                                   \
        }
static const struct raw hostile_raw[] = {
        RAW("{\"user_id\":\"u\0x\",\"event_type\":\"e\"}"),
        RAW("{\"user_id\":\"u1\",\"event_type\":\"e\"}\0"),
        RAW("\0{\"user_id\":\"u1\",\"event_type\":\"e\"}"),
        RAW("{\"user_id\":\"u1\",\0\"event_type\":\"e\"}"),
        RAW("{\"user_id\":\"u1\",\"event_type\":\"e\",\"payload\":{\"a\0\":1}}"),
        RAW("{\"user_id\":\"u1\",\"event_type\":\"e\",\"payload\":{\"a\":\0}}"),
        RAW("{\"user_id\":\"u1\",\"event_type\":\"e\",\"payload\":{\"a\":1\0}}"),
};

/* ---- generated inputs ---- */

struct gen {
        char *buf;
        size_t len, cap;
        bool valid_only; /* no deliberate faults */
};

static void g_put(struct gen *g, const char *s, size_t n)
{
        if (g->len + n >= g->cap)
                return; /* full: the result is cut, which is fine */
        memcpy(g->buf + g->len, s, n);
        g->len += n;
}

static void g_str(struct gen *g, const char *s)
{
        g_put(g, s, strlen(s));
}

static void g_ws(struct gen *g)
{
        static const char *const ws[] = { " ", "\t", "\n", "\r", "  ", " \n " };

        if (rng_below(5) == 0)
                g_str(g, ws[rng_below(6)]);
}

/* String contents: mostly plain, some multi-byte, some escapes (which
 * the fast path declines, but the slow path must still agree with
 * proto_parse on them). */
static void g_string_body(struct gen *g, bool allow_escapes)
{
        static const char *const plain[] = {
                "a",
                "Z",
                "k",
                "0",
                " ",
                "-",
                "_",
                ".",
                ":",
                "/",
                "'",
                "{",
                "}",
                "[",
                "]",
                ",",
                "\x7f",
                "\xc3\xa9",
                "\xe4\xb8\xad",
                "\xf0\x9f\x98\x80",
                "\xef\xbf\xbf",
                "\xf4\x8f\xbf\xbf",
                "xxxxxxxxxxxxxxxx",
                "user",
                "value",
        };
        static const char *const esc[] = {
                "\\n", "\\\"", "\\\\", "\\/", "\\u00e9", "\\ud83d\\ude00", "\\t", "\\u0041",
        };
        size_t n = rng_below(12);

        for (size_t i = 0; i < n; i++) {
                if (allow_escapes && rng_below(40) == 0)
                        g_str(g, esc[rng_below(sizeof(esc) / sizeof(esc[0]))]);
                else
                        g_str(g, plain[rng_below(sizeof(plain) / sizeof(plain[0]))]);
        }
}

static void g_string(struct gen *g, bool allow_escapes)
{
        g_str(g, "\"");
        g_string_body(g, allow_escapes);
        g_str(g, "\"");
}

static void g_number(struct gen *g)
{
        static const char *const odd[] = { "1.5",  "-0", "0.0", "1e3", "12345678901234567890",
                                           "-2E-2" };
        char tmp[32];
        size_t digits = 1 + rng_below(rng_below(4) == 0 ? 19 : 6);
        size_t o = 0;

        if (rng_below(30) == 0) {
                g_str(g, odd[rng_below(sizeof(odd) / sizeof(odd[0]))]);
                return;
        }
        if (rng_below(3) == 0)
                tmp[o++] = '-';
        tmp[o++] = (char)('1' + rng_below(9));
        for (size_t i = 1; i < digits; i++)
                tmp[o++] = (char)('0' + rng_below(10));
        if (rng_below(10) == 0) {
                o = 0;
                tmp[o++] = '0';
        }
        g_put(g, tmp, o);
}

static void g_value(struct gen *g, unsigned depth);

static void g_object(struct gen *g, unsigned depth)
{
        static const char *const keys[] = { "a",   "b",        "k", "user_id",
                                            "x y", "\xc3\xa9", "",  "payload" };
        size_t n = rng_below(6);
        char key[32];

        g_str(g, "{");
        g_ws(g);
        for (size_t i = 0; i < n; i++) {
                if (i)
                        g_str(g, ",");
                g_ws(g);
                /* Mostly unique keys; a shared name now and then makes a
                 * duplicate, unless only valid input is wanted. */
                if (!g->valid_only && rng_below(8) == 0) {
                        g_str(g, "\"");
                        g_str(g, keys[rng_below(sizeof(keys) / sizeof(keys[0]))]);
                        g_str(g, "\"");
                } else {
                        snprintf(key, sizeof(key), "\"k%zu\"", i);
                        g_str(g, key);
                }
                g_ws(g);
                g_str(g, ":");
                g_ws(g);
                g_value(g, depth + 1);
                g_ws(g);
        }
        g_str(g, "}");
}

static void g_value(struct gen *g, unsigned depth)
{
        size_t pick = rng_below(depth > 6 ? 6 : 9);

        switch (pick) {
        case 0:
        case 1: g_string(g, true); break;
        case 2:
        case 3: g_number(g); break;
        case 4: g_str(g, "true"); break;
        case 5: g_str(g, rng_below(2) ? "false" : "null"); break;
        case 6:
        case 7: g_object(g, depth); break;
        default: {
                size_t n = rng_below(5);

                g_str(g, "[");
                for (size_t i = 0; i < n; i++) {
                        if (i)
                                g_str(g, ",");
                        g_ws(g);
                        g_value(g, depth + 1);
                        g_ws(g);
                }
                g_str(g, "]");
                break;
        }
        }
}

/* A random event: a random subset of its fields in a random order. */
static void g_message(struct gen *g)
{
        static const char *const times[] = {
                "\"2026-11-27T05:00:00Z\"",
                "\"2026-11-27T07:00:00.5+02:00\"",
                "\"1999-12-31 23:59:59.999999z\"",
                "\"2026-02-30T00:00:00Z\"",
                "1700000000",
        };
        bool identify = rng_below(6) == 0;
        const char *fields[6];
        size_t nf = 0;

        fields[nf++] = "user_id";
        if (!identify)
                fields[nf++] = "event_type";
        if (rng_below(2))
                fields[nf++] = identify ? "traits" : "payload";
        if (identify || rng_below(4) == 0)
                fields[nf++] = "type";
        if (rng_below(2))
                fields[nf++] = "event_id";
        if (rng_below(4) == 0)
                fields[nf++] = "occurred_at";
        for (size_t i = nf; i > 1; i--) { /* Fisher-Yates */
                size_t j = rng_below(i);
                const char *t = fields[i - 1];

                fields[i - 1] = fields[j];
                fields[j] = t;
        }
        g_ws(g);
        g_str(g, "{");
        for (size_t i = 0; i < nf; i++) {
                if (i)
                        g_str(g, ",");
                g_ws(g);
                g_str(g, "\"");
                g_str(g, fields[i]);
                g_str(g, "\"");
                g_ws(g);
                g_str(g, ":");
                g_ws(g);
                if (!strcmp(fields[i], "payload") || !strcmp(fields[i], "traits")) {
                        g_object(g, 2);
                } else if (!strcmp(fields[i], "type")) {
                        g_str(g, identify ? "\"identify\"" : "\"track\"");
                } else if (!strcmp(fields[i], "event_id")) {
                        g_str(g, "\"ev-");
                        g_number(g);
                        g_str(g, "\"");
                } else if (!strcmp(fields[i], "occurred_at")) {
                        g_str(g, times[rng_below(sizeof(times) / sizeof(times[0]))]);
                } else {
                        g_str(g, "\"");
                        g_str(g, fields[i]);
                        g_string_body(g, false);
                        g_str(g, "\"");
                }
                g_ws(g);
        }
        g_str(g, "}");
        g_ws(g);
}

/* ---- mutations ---- */

static void mutate(char *buf, size_t *len, size_t cap)
{
        static const char *const special[] = {
                "\"",       "\\",      "{",        "}",
                "[",        "]",       ",",        ":",
                "\0",       "\x80",    "\xc0",     "\xed\xa0\x80",
                "\xf4\x90", "0",       "9",        "-",
                ".",        "e",       " ",        "\t",
                "\n",       "\r",      "\x01",     "\x7f",
                "\xff",     "\xc3",    "\xe2\x82", "\xf0\x9f\x98",
                "null",     "true",    "1e400",    "99999999999999999999",
                "\"\":1,",  "\\u0000", "\\ud800",
        };
        size_t n = *len, pos, k;
        const char *sp;

        switch (rng_below(7)) {
        case 0: /* flip one bit */
                if (n)
                        buf[rng_below(n)] ^= (char)(1u << rng_below(8));
                break;
        case 1: /* one random byte */
                if (n)
                        buf[rng_below(n)] = (char)rng_below(256);
                break;
        case 2: /* truncate */ *len = rng_below(n + 1); break;
        case 3: /* delete a short range */
                if (n) {
                        pos = rng_below(n);
                        k = 1 + rng_below(n - pos < 4 ? n - pos : 4);
                        memmove(buf + pos, buf + pos + k, n - pos - k);
                        *len = n - k;
                }
                break;
        case 4: /* overwrite with a special sequence */
        case 5: /* insert a special sequence */
                k = rng_below(sizeof(special) / sizeof(special[0]));
                sp = special[k];
                k = k == 8 ? 1 : strlen(sp); /* the NUL entry */
                pos = rng_below(n + 1);
                if (n + k >= cap)
                        break;
                if (rng_below(7) == 4 && pos + k <= n) {
                        memcpy(buf + pos, sp, k);
                } else {
                        memmove(buf + pos + k, buf + pos, n - pos);
                        memcpy(buf + pos, sp, k);
                        *len = n + k;
                }
                break;
        default: /* duplicate a range */
                if (n) {
                        pos = rng_below(n);
                        k = 1 + rng_below(n - pos < 16 ? n - pos : 16);
                        if (n + k < cap) {
                                memmove(buf + pos + k, buf + pos, n - pos);
                                *len = n + k;
                        }
                }
                break;
        }
}

/* ---- the tests ---- */

START_TEST(test_must_handle)
{
        const char *in = must_handle[_i];

        ck_assert_msg(diff_str(in, NULL), "fast path declined %s", shown(in, strlen(in)));
        /* Without err, and with max_bytes exactly the length. */
        ck_assert(diff_max(in, strlen(in), strlen(in), false, NULL));
}
END_TEST

START_TEST(test_valid_other)
{
        diff_str(valid_other[_i], NULL);
}
END_TEST

START_TEST(test_ops_declined)
{
        ck_assert(!diff_str("{\"op\":\"ping\"}", NULL));
        ck_assert(!diff_str("{\"op\":\"flush\",\"timeout_ms\":5}", NULL));
        ck_assert(!diff_str(PL("{\"s\":\"a\\nb\"}"), NULL));
        ck_assert(!diff_str(PL("{\"r\":1.5}"), NULL));
        ck_assert(!diff_str(EV(",\"occurred_at\":1700000000"), NULL));
}
END_TEST

START_TEST(test_hostile)
{
        const char *in = hostile[_i];

        ck_assert_msg(!diff_str(in, NULL), "fast path took %s", shown(in, strlen(in)));
}
END_TEST

START_TEST(test_hostile_raw)
{
        ck_assert(!diff(hostile_raw[_i].s, hostile_raw[_i].n, NULL));
}
END_TEST

START_TEST(test_oversize)
{
        const char *in = must_handle[0];
        size_t n = strlen(in);

        ck_assert(diff_max(in, n, n, true, NULL));
        ck_assert(!diff_max(in, n, n - 1, true, NULL));
        ck_assert(!diff_max(in, n, 0, true, NULL));
}
END_TEST

/* Nesting around the limit, built by hand: level 1 is the message. */
START_TEST(test_depth)
{
        char buf[1024];

        for (unsigned levels = 60; levels <= 67; levels++) {
                size_t o = 0;
                bool handled;

                o += (size_t)snprintf(buf, sizeof(buf), "%s", EV_PREFIX_P);
                for (unsigned i = 2; i < levels; i++)
                        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s",
                                              i % 2 ? "[" : "{\"k\":");
                o += (size_t)snprintf(buf + o, sizeof(buf) - o, "1");
                for (unsigned i = levels - 1; i >= 2; i--)
                        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s", i % 2 ? "]" : "}");
                o += (size_t)snprintf(buf + o, sizeof(buf) - o, "}");
                ck_assert_uint_lt(o, sizeof(buf));
                handled = diff(buf, o, NULL);
                /* levels counts the message; the innermost container is
                 * level levels-1 here plus the scalar inside it. */
                ck_assert_msg(handled == (levels - 1 <= PROTO_MAX_DEPTH), "levels %u handled %d",
                              levels, handled);
        }
}
END_TEST

/* Duplicate detection up to FAST_MAX_KEYS keys, declined beyond. */
START_TEST(test_many_keys)
{
        char buf[2048];

        for (unsigned n = 30; n <= 34; n++) {
                for (int dup = 0; dup < 2; dup++) {
                        size_t o = (size_t)snprintf(buf, sizeof(buf), "%s{", EV_PREFIX_P);
                        bool handled;

                        for (unsigned i = 0; i < n; i++)
                                o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s\"key%u\":%u",
                                                      i ? "," : "", dup && i == n - 1 ? 0 : i, i);
                        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "}}");
                        handled = diff(buf, o, NULL);
                        ck_assert_msg(handled == (!dup && n <= 32), "%u keys dup %d: handled %d", n,
                                      dup, handled);
                }
        }
}
END_TEST

/* Random valid messages, then mutations of everything above. */
START_TEST(test_generated_and_mutated)
{
        static char buf[MAX_INPUT];
        struct stats gen = { 0 }, mut = { 0 };
        struct gen g = { .buf = buf, .cap = sizeof(buf) };
        const size_t n_must = sizeof(must_handle) / sizeof(must_handle[0]);

        rng_state = UINT64_C(0x5e9095);
        for (unsigned i = 0; i < 2000; i++) {
                g.len = 0;
                g.valid_only = i % 2 == 0;
                g_message(&g);
                diff(buf, g.len, &gen);
        }
        for (unsigned i = 0; i < MUTATIONS; i++) {
                size_t len, pick = rng_below(3);
                unsigned rounds = 1 + (unsigned)rng_below(3);

                if (pick == 0) {
                        const char *s = must_handle[rng_below(n_must)];

                        len = strlen(s);
                        memcpy(buf, s, len);
                } else {
                        g.len = 0;
                        g.valid_only = pick == 1;
                        g_message(&g);
                        len = g.len;
                }
                for (unsigned k = 0; k < rounds; k++)
                        mutate(buf, &len, sizeof(buf));
                if (rng_below(50) == 0)
                        diff_max(buf, len, rng_below(len + 1), true, &mut);
                else
                        diff(buf, len, &mut);
        }
        fprintf(stderr,
                "test-proto-fast: generated %u, fast path took %u; "
                "mutated %u, fast path took %u\n",
                gen.runs, gen.handled, mut.runs, mut.handled);
        /* The differential check means something only if the fast path
         * accepts a good share, including mutants that stay valid. */
        ck_assert_uint_ge(gen.handled, gen.runs / 4);
        ck_assert_uint_ge(mut.handled, 1000);
        ck_assert_uint_ge(mut.runs, 20000);
}
END_TEST

static Suite *proto_fast_suite(void)
{
        Suite *s = suite_create("proto-fast");
        TCase *tc;

        tc = tcase_create("corpus");
        tcase_add_loop_test(tc, test_must_handle, 0, sizeof(must_handle) / sizeof(must_handle[0]));
        tcase_add_loop_test(tc, test_valid_other, 0, sizeof(valid_other) / sizeof(valid_other[0]));
        tcase_add_test(tc, test_ops_declined);
        tcase_add_loop_test(tc, test_hostile, 0, sizeof(hostile) / sizeof(hostile[0]));
        tcase_add_loop_test(tc, test_hostile_raw, 0, sizeof(hostile_raw) / sizeof(hostile_raw[0]));
        suite_add_tcase(s, tc);

        tc = tcase_create("limits");
        tcase_add_test(tc, test_oversize);
        tcase_add_test(tc, test_depth);
        tcase_add_test(tc, test_many_keys);
        suite_add_tcase(s, tc);

        tc = tcase_create("random");
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_generated_and_mutated);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(proto_fast_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
