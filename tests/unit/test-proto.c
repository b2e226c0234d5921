/* test-proto.c - unit tests of the wire format (proto/).
 *
 * Table-driven: every hostile input is checked for its exact rejection
 * reason and for leaving the output buffer as it found it; every good
 * input is checked against the exact normalised line the upstream will
 * see, with a fixed clock and fixed random bytes so ids are known. The
 * time, escaping (JSON and printable), id and batch helpers are checked
 * on their own.
 */
#include "proto.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW_MS INT64_C(1795755600123) /* 2026-11-27T05:00:00.123Z */
#define NOW_STR "2026-11-27T05:00:00.123Z"
#define RND_UUID "00010203-0405-4607-8809-0a0b0c0d0e0f"
#define PREFIX "PREFIX"

static const uint8_t rnd[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };

#define X16 "xxxxxxxxxxxxxxxx"
#define X64 X16 X16 X16 X16
#define X128 X64 X64
#define X256 X128 X128

/* A track event around one field under test. */
#define EV(extra) "{\"user_id\":\"u1\",\"event_type\":\"e\"" extra "}"
#define AT(v) EV(",\"occurred_at\":" v)
/* The same, left open inside its payload. */
#define EV_PAYLOAD "{\"user_id\":\"u1\",\"event_type\":\"e\",\"payload\":"

struct bad_case {
        const char *in;
        size_t len; /* sizeof - 1, so embedded NUL bytes count */
        enum proto_reason want;
};

#define BAD(s, why)                                                                                \
        {                                                                                          \
                s, sizeof(s) - 1, why                                                              \
        }

static const struct bad_case bad_cases[] = {
        /* not JSON */
        BAD("", PROTO_E_BAD_JSON),
        BAD("  \t \r", PROTO_E_BAD_JSON),
        BAD("{", PROTO_E_BAD_JSON),
        BAD("{\"user_id\":\"u1\"", PROTO_E_BAD_JSON),
        BAD("{'user_id':'u1','event_type':'e'}", PROTO_E_BAD_JSON),
        BAD(EV("") " x", PROTO_E_BAD_JSON),
        BAD(EV("") "{}", PROTO_E_BAD_JSON),
        BAD(EV("") "\n" EV(""), PROTO_E_BAD_JSON),
        BAD("{\"user_id\":\"u1\",}", PROTO_E_BAD_JSON),
        BAD(EV(",\"payload\":{\"n\":NaN}"), PROTO_E_BAD_JSON),
        BAD(EV(",\"payload\":{\"n\":01}"), PROTO_E_BAD_JSON),
        BAD(EV(",\"payload\":{\"s\":\"a\x01z\"}"), PROTO_E_BAD_JSON),
        BAD(EV(",\"payload\":{\"s\":\"\\ud800\"}"), PROTO_E_BAD_JSON),
        BAD(EV(",\"payload\":{\"s\":\"\\q\"}"), PROTO_E_BAD_JSON),
        /* not an object */
        BAD("[]", PROTO_E_NOT_OBJECT),
        BAD("[" EV("") "]", PROTO_E_NOT_OBJECT),
        BAD("\"user_id\"", PROTO_E_NOT_OBJECT),
        BAD("42", PROTO_E_NOT_OBJECT),
        BAD("null", PROTO_E_NOT_OBJECT),
        BAD("true", PROTO_E_NOT_OBJECT),
        /* invalid UTF-8 */
        BAD("{\"user_id\":\"\xc0\xaf\",\"event_type\":\"e\"}", PROTO_E_BAD_UTF8), /* overlong '/' */
        BAD("{\"user_id\":\"\xe0\x80\xaf\",\"event_type\":\"e\"}",
            PROTO_E_BAD_UTF8), /* overlong, 3 bytes */
        BAD("{\"user_id\":\"\xf0\x80\x80\xaf\",\"event_type\":\"e\"}",
            PROTO_E_BAD_UTF8), /* overlong, 4 bytes */
        BAD("{\"user_id\":\"\xed\xa0\x80\",\"event_type\":\"e\"}",
            PROTO_E_BAD_UTF8), /* UTF-16 surrogate */
        BAD("{\"user_id\":\"\xe2\x82\",\"event_type\":\"e\"}",
            PROTO_E_BAD_UTF8), /* truncated sequence */
        BAD("{\"user_id\":\"\x80\",\"event_type\":\"e\"}",
            PROTO_E_BAD_UTF8), /* lone continuation byte */
        BAD("{\"user_id\":\"\xff\",\"event_type\":\"e\"}", PROTO_E_BAD_UTF8),
        BAD("{\"user_id\":\"\xf4\x90\x80\x80\",\"event_type\":\"e\"}",
            PROTO_E_BAD_UTF8), /* above U+10FFFF */
        BAD(EV(",\"payload\":{\"k\xc3\":1}"), PROTO_E_BAD_UTF8),
        /* NUL, raw or escaped */
        BAD("{\"user_id\":\"u\0x\",\"event_type\":\"e\"}", PROTO_E_NUL),
        BAD(EV("") "\0", PROTO_E_NUL),
        BAD("{\"user_id\":\"u\\u0000\",\"event_type\":\"e\"}", PROTO_E_NUL),
        BAD(EV(",\"payload\":{\"a\\u0000b\":1}"), PROTO_E_NUL),
        BAD(EV(",\"payload\":{\"a\":[\"\\u0000\"]}"), PROTO_E_NUL),
        /* numbers */
        BAD(EV(",\"payload\":{\"n\":1e400}"), PROTO_E_BAD_NUMBER),
        BAD(EV(",\"payload\":{\"n\":-1e400}"), PROTO_E_BAD_NUMBER),
        BAD(EV(",\"payload\":{\"n\":99999999999999999999999,\"r\":1e400}"), PROTO_E_BAD_NUMBER),
        BAD(AT("99999999999999999999"), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("1e999"), PROTO_E_BAD_NUMBER),
        /* An integer beyond int64 is read again as a double: the other
         * faults of such a message keep their own reasons. */
        BAD(EV(",\"payload\":{\"n\":99999999999999999999999},\"user_id\":\"u2\""),
            PROTO_E_DUPLICATE_KEY),
        BAD(EV(",\"payload\":{\"n\":99999999999999999999999,\"n\":1}"), PROTO_E_DUPLICATE_KEY),
        BAD(EV(",\"payload\":{\"n\":1,\"n\":-99999999999999999999999}"), PROTO_E_DUPLICATE_KEY),
        BAD(EV(",\"payload\":{\"n\":99999999999999999999999,\"s\":\"\\u0000\"}"), PROTO_E_NUL),
        BAD(EV(",\"payload\":{\"n\":[18446744073709551616],\"k\\u0000\":1}"), PROTO_E_NUL),
        BAD(EV(",\"payload\":{\"n\":99999999999999999999999,\"s\":\"\xc3\"}"), PROTO_E_BAD_UTF8),
        BAD(EV(",\"payload\":{\"n\":99999999999999999999999,}"), PROTO_E_BAD_JSON),
        BAD(EV(",\"payload\":{\"n\":99999999999999999999999,\"s\":\"\\ud800\"}"), PROTO_E_BAD_JSON),
        BAD("[99999999999999999999999]", PROTO_E_NOT_OBJECT),
        /* duplicate keys */
        BAD(EV(",\"user_id\":\"u2\""), PROTO_E_DUPLICATE_KEY),
        BAD(EV(",\"payload\":{\"a\":1,\"a\":2}"), PROTO_E_DUPLICATE_KEY),
        BAD(EV(",\"payload\":{\"x\":[{\"b\":1,\"b\":1}]}"), PROTO_E_DUPLICATE_KEY),
        /* unknown fields */
        BAD(EV(",\"properties\":{\"a\":1}"), PROTO_E_UNKNOWN_FIELD),
        BAD(EV(",\"traits\":{}"), PROTO_E_UNKNOWN_FIELD),
        BAD(EV(",\"timeout_ms\":5"), PROTO_E_UNKNOWN_FIELD),
        BAD(EV(",\"\":1"), PROTO_E_UNKNOWN_FIELD),
        BAD(EV(",\"User_id\":\"u\""), PROTO_E_UNKNOWN_FIELD),
        /* missing fields */
        BAD("{}", PROTO_E_MISSING_FIELD),
        BAD("{\"event_type\":\"e\"}", PROTO_E_MISSING_FIELD),
        BAD("{\"user_id\":\"u1\"}", PROTO_E_MISSING_FIELD),
        BAD("{\"type\":\"track\",\"user_id\":\"u1\"}", PROTO_E_MISSING_FIELD),
        /* wrong types, every field */
        BAD("{\"user_id\":1,\"event_type\":\"e\"}", PROTO_E_WRONG_TYPE),
        BAD("{\"user_id\":null,\"event_type\":\"e\"}", PROTO_E_WRONG_TYPE),
        BAD("{\"user_id\":[\"u\"],\"event_type\":\"e\"}", PROTO_E_WRONG_TYPE),
        BAD("{\"user_id\":\"u\",\"event_type\":{}}", PROTO_E_WRONG_TYPE),
        BAD("{\"user_id\":\"u\",\"event_type\":true}", PROTO_E_WRONG_TYPE),
        BAD(EV(",\"payload\":null"), PROTO_E_WRONG_TYPE),
        BAD(EV(",\"payload\":[]"), PROTO_E_WRONG_TYPE),
        BAD(EV(",\"payload\":\"{}\""), PROTO_E_WRONG_TYPE),
        BAD(EV(",\"event_id\":12"), PROTO_E_WRONG_TYPE),
        BAD(EV(",\"event_id\":null"), PROTO_E_WRONG_TYPE),
        BAD(AT("true"), PROTO_E_WRONG_TYPE),
        BAD(AT("null"), PROTO_E_WRONG_TYPE),
        BAD(AT("[1]"), PROTO_E_WRONG_TYPE),
        BAD(EV(",\"type\":1"), PROTO_E_WRONG_TYPE),
        BAD(EV(",\"type\":null"), PROTO_E_WRONG_TYPE),
        /* lengths */
        BAD("{\"user_id\":\"\",\"event_type\":\"e\"}", PROTO_E_BAD_LENGTH),
        BAD("{\"user_id\":\"" X256 "x\",\"event_type\":\"e\"}", PROTO_E_BAD_LENGTH),
        BAD("{\"user_id\":\"u\",\"event_type\":\"\"}", PROTO_E_BAD_LENGTH),
        BAD("{\"user_id\":\"u\",\"event_type\":\"" X128 "x\"}", PROTO_E_BAD_LENGTH),
        /* 129 bytes that are 65 characters: the limit is in bytes */
        BAD("{\"user_id\":\"u\",\"event_type\":\"" X64 "\xc3\xa9" X16 X16 X16 "xxxxxxxxxxxxxxx\"}",
            PROTO_E_BAD_LENGTH),
        /* event ids */
        BAD(EV(",\"event_id\":\"\""), PROTO_E_BAD_EVENT_ID),
        BAD(EV(",\"event_id\":\"" X64 "x\""), PROTO_E_BAD_EVENT_ID),
        BAD(EV(",\"event_id\":\"a b\""), PROTO_E_BAD_EVENT_ID),
        BAD(EV(",\"event_id\":\"a/b\""), PROTO_E_BAD_EVENT_ID),
        BAD(EV(",\"event_id\":\"caf\xc3\xa9\""), PROTO_E_BAD_EVENT_ID),
        BAD(EV(",\"event_id\":\"a\\nb\""), PROTO_E_BAD_EVENT_ID),
        /* timestamps */
        BAD(AT("\"2026-13-01T00:00:00Z\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"2026-00-01T00:00:00Z\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"2026-02-30T00:00:00Z\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"2023-02-29T00:00:00Z\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"1900-02-29T00:00:00Z\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"2026-04-31T00:00:00Z\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"2026-11-27T05:00:00\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"2026-11-27T24:00:00Z\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"2026-11-27T05:60:00Z\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"2026-11-27T05:00:61Z\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"2026-11-27T05:00:00.Z\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"2026-11-27T05:00:00+2:00\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"2026-11-27T05:00:00+24:00\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"2026-11-27T05:00:00+0200\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"2026-11-27\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"2026-11-27T05:00:00Z \""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\" 2026-11-27T05:00:00Z\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"26-11-27T05:00:00Z\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"yesterday\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"1700000000\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"0000-01-01T00:00:00+00:01\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("\"9999-12-31T23:59:59-00:01\""), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("253402300800"), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("-62167219201"), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("1e300"), PROTO_E_BAD_TIMESTAMP),
        BAD(AT("-9223372036854775808"), PROTO_E_BAD_TIMESTAMP),
        /* type */
        BAD(EV(",\"type\":\"page\""), PROTO_E_BAD_TYPE),
        BAD(EV(",\"type\":\"Track\""), PROTO_E_BAD_TYPE),
        BAD(EV(",\"type\":\"\""), PROTO_E_BAD_TYPE),
        /* identify */
        BAD("{\"type\":\"identify\",\"user_id\":\"u\",\"event_type\":\"e\"}",
            PROTO_E_UNKNOWN_FIELD),
        BAD("{\"type\":\"identify\",\"user_id\":\"u\",\"payload\":{}}", PROTO_E_UNKNOWN_FIELD),
        BAD("{\"type\":\"identify\",\"user_id\":\"u\",\"traits\":[]}", PROTO_E_WRONG_TYPE),
        BAD("{\"type\":\"identify\",\"user_id\":\"u\",\"traits\":null}", PROTO_E_WRONG_TYPE),
        BAD("{\"type\":\"identify\",\"traits\":{}}", PROTO_E_MISSING_FIELD),
        BAD("{\"type\":\"identify\",\"user_id\":\"\"}", PROTO_E_BAD_LENGTH),
        BAD("{\"type\":\"identify\",\"user_id\":\"u\",\"occurred_at\":\"x\"}",
            PROTO_E_BAD_TIMESTAMP),
        /* ops */
        BAD("{\"op\":1}", PROTO_E_WRONG_TYPE),
        BAD("{\"op\":null}", PROTO_E_WRONG_TYPE),
        BAD("{\"op\":\"launch\"}", PROTO_E_UNKNOWN_OP),
        BAD("{\"op\":\"PING\"}", PROTO_E_UNKNOWN_OP),
        BAD("{\"op\":\"\"}", PROTO_E_UNKNOWN_OP),
        BAD("{\"op\":\"ping\",\"timeout_ms\":5}", PROTO_E_UNKNOWN_FIELD),
        BAD("{\"op\":\"stats\",\"verbose\":true}", PROTO_E_UNKNOWN_FIELD),
        BAD("{\"op\":\"ping\",\"type\":\"track\"}", PROTO_E_UNKNOWN_FIELD),
        BAD("{\"user_id\":\"u\",\"op\":\"reset_session\"}", PROTO_E_UNKNOWN_FIELD),
        BAD("{\"op\":\"flush\",\"timeout_ms\":-1}", PROTO_E_BAD_VALUE),
        BAD("{\"op\":\"flush\",\"timeout_ms\":3600001}", PROTO_E_BAD_VALUE),
        BAD("{\"op\":\"flush\",\"timeout_ms\":\"5\"}", PROTO_E_WRONG_TYPE),
        BAD("{\"op\":\"flush\",\"timeout_ms\":1.5}", PROTO_E_WRONG_TYPE),
        BAD("{\"op\":\"flush\",\"timeout_ms\":null}", PROTO_E_WRONG_TYPE),
        BAD("{\"op\":\"set_user\"}", PROTO_E_MISSING_FIELD),
        BAD("{\"op\":\"set_user\",\"user_id_sig\":\"ab\"}", PROTO_E_MISSING_FIELD),
        BAD("{\"op\":\"set_user\",\"user_id\":\"\"}", PROTO_E_BAD_LENGTH),
        BAD("{\"op\":\"set_user\",\"user_id\":\"" X256 "x\"}", PROTO_E_BAD_LENGTH),
        BAD("{\"op\":\"set_user\",\"user_id\":7}", PROTO_E_WRONG_TYPE),
        BAD("{\"op\":\"set_user\",\"user_id\":\"u\",\"user_id_sig\":1}", PROTO_E_WRONG_TYPE),
        BAD("{\"op\":\"set_user\",\"user_id\":\"u\",\"user_id_sig\":\"\"}", PROTO_E_BAD_LENGTH),
};

/* Parse into a buffer that already holds PREFIX and check the verdict;
 * on failure the buffer must be exactly as it was. */
static void check_bad(const char *in, size_t len, size_t max, enum proto_reason want,
                      const char *label)
{
        struct proto_buf out = { 0 };
        struct proto_msg msg;
        struct proto_error err = { .reason = PROTO_OK };
        int r;

        ck_assert_int_eq(proto_buf_append_str(&out, PREFIX), 0);
        r = proto_parse(in, len, max, NOW_MS, rnd, &out, &msg, &err);
        ck_assert_msg(r == -EINVAL, "%s: returned %d, want -EINVAL", label, r);
        ck_assert_msg(err.reason == want, "%s: got %s (%s), want %s", label,
                      proto_reason_name(err.reason), err.detail, proto_reason_name(want));
        ck_assert_msg(err.detail[0] != '\0', "%s: empty detail", label);
        ck_assert_uint_eq(out.len, strlen(PREFIX));
        ck_assert(memcmp(out.data, PREFIX, out.len) == 0);
        proto_buf_free(&out);
}

START_TEST(test_reject)
{
        const struct bad_case *c = &bad_cases[_i];
        char label[64];

        snprintf(label, sizeof(label), "bad case %d", _i);
        check_bad(c->in, c->len, PROTO_MAX_MESSAGE_BYTES, c->want, label);
}
END_TEST

START_TEST(test_reject_count)
{
        /* The brief asks for at least 50 hostile inputs. */
        ck_assert_uint_ge(sizeof(bad_cases) / sizeof(bad_cases[0]), 50);
}
END_TEST

/* ---- good messages: exact normalised output ---- */

struct good_case {
        const char *in;
        const char *want;
};

#define OUT(id, uid, type, at, payload)                                                            \
        "{\"event_id\":\"" id "\",\"user_id\":\"" uid "\",\"event_type\":\"" type                  \
        "\",\"occurred_at\":\"" at "\",\"payload\":" payload "}"

static const struct good_case good_cases[] = {
        { "{\"user_id\":\"u1\",\"event_type\":\"deploy\","
          "\"payload\":{\"sha\":\"abc\"}}",
          OUT(RND_UUID, "u1", "deploy", NOW_STR, "{\"sha\":\"abc\"}") },
        /* whitespace, CRLF, explicit type, default payload */
        { " \t{ \"type\" : \"track\", \"user_id\" : \"u1\",\n"
          " \"event_type\" : \"e\" }  \r",
          OUT(RND_UUID, "u1", "e", NOW_STR, "{}") },
        /* any field order in, canonical order out */
        { "{\"payload\":{\"b\":1,\"a\":2},\"event_type\":\"e\","
          "\"event_id\":\"id-1\",\"user_id\":\"u\"}",
          OUT("id-1", "u", "e", NOW_STR, "{\"b\":1,\"a\":2}") },
        { EV(",\"event_id\":\"abc:1.2_3-X\""), OUT("abc:1.2_3-X", "u1", "e", NOW_STR, "{}") },
        { EV(",\"event_id\":\"" X64 "\""), OUT(X64, "u1", "e", NOW_STR, "{}") },
        /* timestamps: offsets to UTC, fractions truncated */
        { AT("\"2026-11-27T07:00:00.123456+02:00\""),
          OUT(RND_UUID, "u1", "e", "2026-11-27T05:00:00.123Z", "{}") },
        { AT("\"2026-11-27T00:30:00-05:00\""),
          OUT(RND_UUID, "u1", "e", "2026-11-27T05:30:00.000Z", "{}") },
        { AT("\"2026-12-31T23:30:00-01:00\""),
          OUT(RND_UUID, "u1", "e", "2027-01-01T00:30:00.000Z", "{}") },
        { AT("\"2024-03-01T00:15:00+01:00\""),
          OUT(RND_UUID, "u1", "e", "2024-02-29T23:15:00.000Z", "{}") },
        { AT("\"2026-11-27t05:00:00.9z\""),
          OUT(RND_UUID, "u1", "e", "2026-11-27T05:00:00.900Z", "{}") },
        { AT("\"2026-11-27 05:00:00.99999999999Z\""),
          OUT(RND_UUID, "u1", "e", "2026-11-27T05:00:00.999Z", "{}") },
        { AT("\"2016-12-31T23:59:60Z\""),
          OUT(RND_UUID, "u1", "e", "2016-12-31T23:59:59.999Z", "{}") },
        { AT("\"2000-02-29T12:34:56.789-00:00\""),
          OUT(RND_UUID, "u1", "e", "2000-02-29T12:34:56.789Z", "{}") },
        { AT("\"0000-01-01T00:00:00Z\""),
          OUT(RND_UUID, "u1", "e", "0000-01-01T00:00:00.000Z", "{}") },
        /* epoch seconds */
        { AT("1700000000"), OUT(RND_UUID, "u1", "e", "2023-11-14T22:13:20.000Z", "{}") },
        { AT("1700000000.9999"), OUT(RND_UUID, "u1", "e", "2023-11-14T22:13:20.999Z", "{}") },
        { AT("1700000000.123"), OUT(RND_UUID, "u1", "e", "2023-11-14T22:13:20.123Z", "{}") },
        { AT("1.001"), OUT(RND_UUID, "u1", "e", "1970-01-01T00:00:01.001Z", "{}") },
        { AT("-1.5"), OUT(RND_UUID, "u1", "e", "1969-12-31T23:59:58.500Z", "{}") },
        { AT("-0.0001"), OUT(RND_UUID, "u1", "e", "1969-12-31T23:59:59.999Z", "{}") },
        { AT("0"), OUT(RND_UUID, "u1", "e", "1970-01-01T00:00:00.000Z", "{}") },
        { AT("1.7e9"), OUT(RND_UUID, "u1", "e", "2023-11-14T22:13:20.000Z", "{}") },
        { AT("253402300799"), OUT(RND_UUID, "u1", "e", "9999-12-31T23:59:59.000Z", "{}") },
        /* identify */
        { "{\"type\":\"identify\",\"user_id\":\"u1\","
          "\"traits\":{\"plan\":\"pro\",\"seats\":3}}",
          OUT(RND_UUID, "u1", "context_identified", NOW_STR,
              "{\"traits\":{\"plan\":\"pro\",\"seats\":3}}") },
        { "{\"type\":\"identify\",\"user_id\":\"u1\"}",
          OUT(RND_UUID, "u1", "context_identified", NOW_STR, "{\"traits\":{}}") },
        { "{\"event_id\":\"i1\",\"occurred_at\":\"2026-01-02T03:04:05Z\","
          "\"user_id\":\"u1\",\"type\":\"identify\",\"traits\":{}}",
          OUT("i1", "u1", "context_identified", "2026-01-02T03:04:05.000Z", "{\"traits\":{}}") },
        /* numbers keep their kind and round-trip, shortest form */
        { EV(",\"payload\":{\"i\":-9223372036854775808,"
             "\"j\":9223372036854775807,\"r\":0.1,\"f\":1.0,\"z\":-0.0,"
             "\"big\":1e300,\"t\":1e-7,"
             "\"x\":1E2,\"p\":3.141592653589793,\"u\":1e-400}"),
          OUT(RND_UUID, "u1", "e", NOW_STR,
              "{\"i\":-9223372036854775808,\"j\":9223372036854775807,"
              "\"r\":0.1,\"f\":1.0,\"z\":-0.0,\"big\":1e+300,\"t\":1e-07,"
              "\"x\":100.0,\"p\":3.141592653589793,\"u\":0.0}") },
        /* integers beyond int64 (SPEC 2: rejected only when a double
         * cannot hold them either) become doubles; the rest keep their
         * kind, and digits inside strings are left alone */
        { EV(",\"payload\":{\"n\":99999999999999999999999,\"m\":-9223372036854775809,"
             "\"i\":9223372036854775807,\"k\":-9223372036854775808,\"s\":"
             "\"99999999999999999999999\",\"a\":[18446744073709551616,1,\"\\\"1\"],"
             "\"e\":1e5,\"f\":12345678901234567890.5}"),
          OUT(RND_UUID, "u1", "e", NOW_STR,
              "{\"n\":1e+23,\"m\":-9.223372036854776e+18,\"i\":9223372036854775807,"
              "\"k\":-9223372036854775808,\"s\":\"99999999999999999999999\","
              "\"a\":[1.8446744073709552e+19,1,\"\\\"1\"],\"e\":100000.0,"
              "\"f\":1.2345678901234567e+19}") },
        /* strings re-escaped minimally; UTF-8 kept as is */
        { EV(",\"payload\":{"
             "\"s\":\"a\\\"b\\\\c\\/d\\n\\t\\u0001\\u00e9\\u20ac\","
             "\"k\\u00e9\":\"\xe2\x82\xac\",\"d\":\"\x7f\"}"),
          OUT(RND_UUID, "u1", "e", NOW_STR,
              "{\"s\":\"a\\\"b\\\\c/d\\n\\t\\u0001\xc3\xa9\xe2\x82\xac\","
              "\"k\xc3\xa9\":\"\xe2\x82\xac\",\"d\":\"\x7f\"}") },
        { "{\"user_id\":\"\\\"q\\\"\\u00e9\",\"event_type\":\"a\\\\b\"}",
          OUT(RND_UUID, "\\\"q\\\"\xc3\xa9", "a\\\\b", NOW_STR, "{}") },
        /* structure kept, whitespace dropped */
        { EV(",\"payload\":{ \"a\" : [ 1 , [ ] , { } , null , true , false ] ,"
             " \"b\" : { \"c\" : [ { \"d\" : \"[{\" } ] } }"),
          OUT(RND_UUID, "u1", "e", NOW_STR,
              "{\"a\":[1,[],{},null,true,false],"
              "\"b\":{\"c\":[{\"d\":\"[{\"}]}}") },
        /* the longest allowed fields */
        { "{\"user_id\":\"" X256 "\",\"event_type\":\"" X128 "\"}",
          OUT(RND_UUID, X256, X128, NOW_STR, "{}") },
};

START_TEST(test_golden)
{
        const struct good_case *c = &good_cases[_i];
        struct proto_buf out = { 0 };
        struct proto_msg msg;
        struct proto_error err;
        size_t wlen = strlen(c->want);
        int r;

        ck_assert_int_eq(proto_buf_append_str(&out, PREFIX), 0);
        r = proto_parse(c->in, strlen(c->in), PROTO_MAX_MESSAGE_BYTES, NOW_MS, rnd, &out, &msg,
                        &err);
        ck_assert_msg(r == 0, "good case %d: %d %s (%s)", _i, r, proto_reason_name(err.reason),
                      err.detail);
        ck_assert_int_eq(msg.kind, PROTO_MSG_EVENT);
        ck_assert_int_eq(err.reason, PROTO_OK);
        ck_assert_msg(out.len == strlen(PREFIX) + wlen &&
                              memcmp(out.data + strlen(PREFIX), c->want, wlen) == 0,
                      "good case %d:\n got  %.*s\n want %s", _i, (int)(out.len - strlen(PREFIX)),
                      out.data + strlen(PREFIX), c->want);
        ck_assert(memcmp(out.data, PREFIX, strlen(PREFIX)) == 0);
        proto_buf_free(&out);
}
END_TEST

START_TEST(test_output_is_json)
{
        /* Every golden output must be valid JSON with exactly five keys. */
        const struct good_case *c = &good_cases[_i];
        json_error_t je;
        json_t *v = json_loads(c->want, JSON_REJECT_DUPLICATES, &je);

        ck_assert_msg(v != NULL, "case %d: %s", _i, je.text);
        ck_assert_uint_eq(json_object_size(v), 5);
        ck_assert(json_is_string(json_object_get(v, "event_id")));
        ck_assert(json_is_object(json_object_get(v, "payload")));
        json_decref(v);
}
END_TEST

/* ---- ops ---- */

struct op_case {
        const char *in;
        enum proto_op op;
        int64_t timeout_ms;
        const char *user_id;
        const char *sig; /* NULL: no signature */
};

static const struct op_case op_cases[] = {
        { "{\"op\":\"ping\"}", PROTO_OP_PING, 0, "", NULL },
        { " {\"op\":\"stats\"}\r", PROTO_OP_STATS, 0, "", NULL },
        { "{\"op\":\"flush\"}", PROTO_OP_FLUSH, 30000, "", NULL },
        { "{\"op\":\"flush\",\"timeout_ms\":0}", PROTO_OP_FLUSH, 0, "", NULL },
        { "{\"timeout_ms\":3600000,\"op\":\"flush\"}", PROTO_OP_FLUSH, 3600000, "", NULL },
        { "{\"op\":\"set_user\",\"user_id\":\"u1\"}", PROTO_OP_SET_USER, 0, "u1", NULL },
        { "{\"op\":\"set_user\",\"user_id\":\"u\\u00e9\",\"user_id_sig\":"
          "\"ab12\"}",
          PROTO_OP_SET_USER, 0, "u\xc3\xa9", "ab12" },
        { "{\"op\":\"set_user\",\"user_id\":\"" X256 "\"}", PROTO_OP_SET_USER, 0, X256, NULL },
        { "{\"op\":\"reset_session\"}", PROTO_OP_RESET_SESSION, 0, "", NULL },
};

START_TEST(test_ops)
{
        const struct op_case *c = &op_cases[_i];
        struct proto_buf out = { 0 };
        struct proto_msg msg;
        struct proto_error err;
        int r;

        memset(&msg, 0xa5, sizeof(msg));
        ck_assert_int_eq(proto_buf_append_str(&out, PREFIX), 0);
        r = proto_parse(c->in, strlen(c->in), PROTO_MAX_MESSAGE_BYTES, NOW_MS, rnd, &out, &msg,
                        &err);
        ck_assert_msg(r == 0, "op case %d: %s (%s)", _i, proto_reason_name(err.reason), err.detail);
        ck_assert_int_eq(msg.kind, PROTO_MSG_OP);
        ck_assert_int_eq(msg.op, c->op);
        if (c->op == PROTO_OP_FLUSH)
                ck_assert_int_eq(msg.timeout_ms, c->timeout_ms);
        ck_assert_str_eq(msg.user_id, c->user_id);
        ck_assert_int_eq(msg.has_sig, c->sig != NULL);
        ck_assert_str_eq(msg.user_id_sig, c->sig ? c->sig : "");
        ck_assert_uint_eq(out.len, strlen(PREFIX)); /* ops write nothing */
        proto_buf_free(&out);
}
END_TEST

/* ---- limits: size and depth ---- */

START_TEST(test_oversize)
{
        const char *ev = EV("");
        size_t n = strlen(ev);
        struct proto_buf out = { 0 };
        struct proto_msg msg;
        struct proto_error err;

        check_bad(ev, n, n - 1, PROTO_E_OVERSIZE, "one byte over");
        /* The limit is on the raw line: padding counts too. */
        check_bad(" " EV("") " ", n + 2, n + 1, PROTO_E_OVERSIZE, "padding");
        ck_assert_int_eq(proto_parse(ev, n, n, NOW_MS, rnd, &out, &msg, &err), 0);
        proto_buf_free(&out);
}
END_TEST

START_TEST(test_oversize_big)
{
        size_t n = PROTO_MAX_MESSAGE_BYTES + 1;
        char *big = malloc(n);

        ck_assert_ptr_nonnull(big);
        memset(big, ' ', n);
        big[0] = '{';
        big[n - 1] = '}';
        check_bad(big, n, PROTO_MAX_MESSAGE_BYTES, PROTO_E_OVERSIZE, "64K+1");
        free(big);
}
END_TEST

/* An event whose payload nests to `depth` levels in all, NUL-terminated. */
static char *nested(int depth, const char *open, const char *close)
{
        struct proto_buf b = { 0 };

        ck_assert_int_eq(proto_buf_append_str(&b, EV_PAYLOAD "{\"a\":"), 0);
        /* The event object and the payload are two levels already. */
        for (int i = 0; i < depth - 2; i++)
                ck_assert_int_eq(proto_buf_append_str(&b, open), 0);
        ck_assert_int_eq(proto_buf_append_str(&b, "0"), 0);
        for (int i = 0; i < depth - 2; i++)
                ck_assert_int_eq(proto_buf_append_str(&b, close), 0);
        ck_assert_int_eq(proto_buf_append(&b, "}}", 3), 0); /* with NUL */
        return b.data;
}

START_TEST(test_depth)
{
        struct proto_buf out = { 0 };
        struct proto_msg msg;
        struct proto_error err;
        char *s;
        int r;

        /* Exactly 64 levels are fine, with arrays and with objects. */
        s = nested(PROTO_MAX_DEPTH, "[", "]");
        r = proto_parse(s, strlen(s), PROTO_MAX_MESSAGE_BYTES, NOW_MS, rnd, &out, &msg, &err);
        ck_assert_msg(r == 0, "64 arrays: %s", err.detail);
        free(s);
        s = nested(PROTO_MAX_DEPTH, "{\"k\":", "}");
        r = proto_parse(s, strlen(s), PROTO_MAX_MESSAGE_BYTES, NOW_MS, rnd, &out, &msg, &err);
        ck_assert_msg(r == 0, "64 objects: %s", err.detail);
        free(s);
        /* 65 are not. */
        s = nested(PROTO_MAX_DEPTH + 1, "[", "]");
        check_bad(s, strlen(s), PROTO_MAX_MESSAGE_BYTES, PROTO_E_TOO_DEEP, "65 arrays");
        free(s);
        s = nested(PROTO_MAX_DEPTH + 1, "{\"k\":", "}");
        check_bad(s, strlen(s), PROTO_MAX_MESSAGE_BYTES, PROTO_E_TOO_DEEP, "65 objects");
        free(s);
        /* Thousands of levels are refused before jansson recurses. */
        s = nested(5000, "[", "]");
        check_bad(s, strlen(s), PROTO_MAX_MESSAGE_BYTES, PROTO_E_TOO_DEEP, "5000 arrays");
        free(s);
        proto_buf_free(&out);
}
END_TEST

START_TEST(test_depth_strings)
{
        /* Brackets inside strings, even after escaped quotes, are text. */
        struct proto_buf b = { 0 }, out = { 0 };
        struct proto_msg msg;
        struct proto_error err;
        int r;

        ck_assert_int_eq(proto_buf_append_str(&b, EV_PAYLOAD "{\"s\":\"\\\"\\\\"), 0);
        for (int i = 0; i < 200; i++)
                ck_assert_int_eq(proto_buf_append_str(&b, "[{"), 0);
        ck_assert_int_eq(proto_buf_append_str(&b, "\"}}"), 0);
        r = proto_parse(b.data, b.len, PROTO_MAX_MESSAGE_BYTES, NOW_MS, rnd, &out, &msg, &err);
        ck_assert_msg(r == 0, "%s", err.detail);
        proto_buf_free(&b);
        proto_buf_free(&out);
}
END_TEST

/* ---- details ---- */

START_TEST(test_detail)
{
        struct proto_buf out = { 0 };
        struct proto_msg msg;
        struct proto_error err;
        const char *in = EV(",\"properties\":{}");
        const char *evil = "{\"pro\\u0001perties\\\"\xc3\xa9" X128 "\":1}";
        int r;

        r = proto_parse(in, strlen(in), PROTO_MAX_MESSAGE_BYTES, NOW_MS, rnd, &out, &msg, &err);
        ck_assert_int_eq(r, -EINVAL);
        ck_assert_int_eq(err.reason, PROTO_E_UNKNOWN_FIELD);
        ck_assert_ptr_nonnull(strstr(err.detail, "\"properties\""));

        /* A hostile key is cut and shown as printable ASCII only. */
        r = proto_parse(evil, strlen(evil), PROTO_MAX_MESSAGE_BYTES, NOW_MS, rnd, &out, &msg, &err);
        ck_assert_int_eq(r, -EINVAL);
        ck_assert_int_eq(err.reason, PROTO_E_UNKNOWN_FIELD);
        ck_assert_ptr_nonnull(strstr(err.detail, "pro\\x01perties\\\""));
        ck_assert_ptr_nonnull(strstr(err.detail, "..."));
        for (const char *p = err.detail; *p; p++)
                ck_assert(*p >= 0x20 && *p < 0x7f);

        /* jansson's own message is kept printable too. */
        r = proto_parse("{\"a\xff\":1}", 8, PROTO_MAX_MESSAGE_BYTES, NOW_MS, rnd, &out, &msg, &err);
        ck_assert_int_eq(err.reason, PROTO_E_BAD_UTF8);
        for (const char *p = err.detail; *p; p++)
                ck_assert(*p >= 0x20 && *p < 0x7f);

        /* err may be NULL. */
        r = proto_parse("{}", 2, 10, NOW_MS, rnd, &out, &msg, NULL);
        ck_assert_int_eq(r, -EINVAL);
        ck_assert_uint_eq(out.len, 0);
        proto_buf_free(&out);
}
END_TEST

START_TEST(test_reason_names)
{
        static const char *const want[PROTO_REASON_COUNT] = {
                "ok",         "bad_json",   "not_object",    "bad_utf8",       "nul",
                "too_deep",   "bad_number", "duplicate_key", "oversize",       "missing_field",
                "wrong_type", "bad_length", "unknown_field", "bad_timestamp",  "bad_event_id",
                "bad_type",   "unknown_op", "bad_value",     "op_not_allowed", "nomem",
        };

        for (int i = 0; i < PROTO_REASON_COUNT; i++)
                ck_assert_str_eq(proto_reason_name((enum proto_reason)i), want[i]);
        ck_assert_str_eq(proto_reason_name(PROTO_REASON_COUNT), "unknown");
        ck_assert_str_eq(proto_reason_name((enum proto_reason) - 1), "unknown");
}
END_TEST

/* ---- time ---- */

static const struct {
        int64_t ms;
        const char *s;
} time_cases[] = {
        { 0, "1970-01-01T00:00:00.000Z" },
        { -1, "1969-12-31T23:59:59.999Z" },
        { -86400000, "1969-12-31T00:00:00.000Z" },
        { 951827696789, "2000-02-29T12:34:56.789Z" },
        { NOW_MS, NOW_STR },
        { -62135596800000, "0001-01-01T00:00:00.000Z" },
        { -62167219200000, "0000-01-01T00:00:00.000Z" },
        { 253402300799999, "9999-12-31T23:59:59.999Z" },
        { 4107542400000, "2100-03-01T00:00:00.000Z" },
};

START_TEST(test_time_format)
{
        char buf[PROTO_TIME_LEN + 1];
        int64_t ms;

        for (size_t i = 0; i < sizeof(time_cases) / sizeof(time_cases[0]); i++) {
                proto_time_format(time_cases[i].ms, buf);
                ck_assert_str_eq(buf, time_cases[i].s);
                ck_assert_int_eq(proto_time_parse(buf, strlen(buf), &ms), 0);
                ck_assert_int_eq(ms, time_cases[i].ms);
        }
        /* Out of range clamps to the ends. */
        proto_time_format(INT64_MIN, buf);
        ck_assert_str_eq(buf, "0000-01-01T00:00:00.000Z");
        proto_time_format(INT64_MAX, buf);
        ck_assert_str_eq(buf, "9999-12-31T23:59:59.999Z");
        proto_time_format(-62167219200001, buf);
        ck_assert_str_eq(buf, "0000-01-01T00:00:00.000Z");
}
END_TEST

START_TEST(test_time_roundtrip)
{
        /* A prime step walks through every year, month, day and hour. */
        const int64_t lo = INT64_C(-62167219200000);
        const int64_t hi = INT64_C(253402300799999);
        const int64_t step = INT64_C(3155760001) * 7; /* ~256 days */
        char buf[PROTO_TIME_LEN + 1];
        int64_t ms, n = 0;

        for (int64_t t = lo; t <= hi && n < 100000; t += step, n++) {
                proto_time_format(t, buf);
                ck_assert_int_eq(strlen(buf), PROTO_TIME_LEN);
                ck_assert_int_eq(proto_time_parse(buf, PROTO_TIME_LEN, &ms), 0);
                ck_assert_msg(ms == t, "%s: %lld != %lld", buf, (long long)ms, (long long)t);
        }
        ck_assert_int_gt(n, 10000);
}
END_TEST

START_TEST(test_time_parse)
{
        int64_t ms = 42;

        ck_assert_int_eq(proto_time_parse("2026-11-27T05:00:00Z", 20, &ms), 0);
        ck_assert_int_eq(ms, NOW_MS - 123);
        ck_assert_int_eq(proto_time_parse("2026-11-27T06:00:00.1239+01:00", 30, &ms), 0);
        ck_assert_int_eq(ms, NOW_MS);
        /* Only n bytes are read: no NUL needed, none past n used. */
        ck_assert_int_eq(proto_time_parse("2026-11-27T05:00:00Zjunk", 20, &ms), 0);
        ck_assert_int_eq(proto_time_parse("2026-11-27T05:00:00Z", 19, &ms), -EINVAL);
        ck_assert_int_eq(proto_time_parse("2026-11-27T05:00:00Z", 0, &ms), -EINVAL);
        ms = 7;
        ck_assert_int_eq(proto_time_parse("2026-02-29T00:00:00Z", 20, &ms), -EINVAL);
        ck_assert_int_eq(ms, 7); /* untouched on failure */
        ck_assert_int_eq(proto_time_parse("2024-02-29T00:00:00Z", 20, &ms), 0);
        ck_assert_int_eq(proto_time_parse("2000-02-29T00:00:00Z", 20, &ms), 0);
        ck_assert_int_eq(proto_time_parse("2026-11-27T05:00:00+23:59", 25, &ms), 0);
        ck_assert_int_eq(proto_time_parse("2026-11-27T05:00:00+23:60", 25, &ms), -EINVAL);
        ck_assert_int_eq(proto_time_parse("2026-11-27T05:00:00-05", 22, &ms), -EINVAL);
        ck_assert_int_eq(proto_time_parse("+026-11-27T05:00:00Z", 20, &ms), -EINVAL);
}
END_TEST

/* ---- escaping ---- */

START_TEST(test_escape)
{
        static const struct {
                const char *in;
                size_t n;
                const char *want;
        } cases[] = {
                { "", 0, "\"\"" },
                { "plain", 5, "\"plain\"" },
                { "a\"b", 3, "\"a\\\"b\"" },
                { "a\\b", 3, "\"a\\\\b\"" },
                { "\n\t\r\b\f", 5, "\"\\n\\t\\r\\b\\f\"" },
                { "\x01\x1f", 2, "\"\\u0001\\u001f\"" },
                { "\0x", 2, "\"\\u0000x\"" },
                { "\x7f/\xc3\xa9", 4, "\"\x7f/\xc3\xa9\"" },
                { "\"\"\\\\", 4, "\"\\\"\\\"\\\\\\\\\"" },
        };
        struct proto_buf b = { 0 };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                proto_buf_reset(&b);
                ck_assert_int_eq(proto_json_escape(&b, cases[i].in, cases[i].n), 0);
                ck_assert_uint_eq(b.len, strlen(cases[i].want));
                ck_assert(memcmp(b.data, cases[i].want, b.len) == 0);
        }
        proto_buf_free(&b);
        proto_buf_free(&b); /* twice is fine */
        proto_buf_free(NULL);
}
END_TEST

START_TEST(test_escape_all_bytes)
{
        /* Every byte value escaped and parsed back gives the original. */
        char in[256];
        struct proto_buf b = { 0 };
        json_error_t je;
        json_t *v;

        for (int i = 0; i < 256; i++)
                in[i] = (char)(i < 0x80 ? i : 'z');
        ck_assert_int_eq(proto_json_escape(&b, in, sizeof(in)), 0);
        v = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        ck_assert_msg(v != NULL, "%s", je.text);
        ck_assert_uint_eq(json_string_length(v), sizeof(in));
        ck_assert(memcmp(json_string_value(v), in, sizeof(in)) == 0);
        json_decref(v);
        proto_buf_free(&b);
}
END_TEST

/* proto_json_escape_to() writes what proto_json_escape() appends, within
 * PROTO_JSON_ESCAPED_MAX, at every length around proto_json_escape()'s
 * pieces and with escapes anywhere. */
START_TEST(test_escape_to)
{
        static const char pool[] = { 'a', 'z', '"', '\\', '\n', '\x01', '\x1f', '\x7f', '\0', '/' };
        static char in[3000], out[PROTO_JSON_ESCAPED_MAX(3000) + 1];
        static const size_t lens[] = { 0, 1, 5, 511, 512, 513, 1023, 1024, 1025, 3000 };
        struct proto_buf b = { 0 };
        unsigned seed = 1;

        for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
                for (int mix = 0; mix < 4; mix++) {
                        size_t n = lens[li], w;

                        for (size_t i = 0; i < n; i++)
                                in[i] = mix == 0   ? 'x'
                                        : mix == 1 ? '\x01' /* the worst case */
                                                   : pool[rand_r(&seed) % sizeof(pool)];
                        memset(out, '#', sizeof(out));
                        w = proto_json_escape_to(out, in, n);
                        ck_assert_uint_le(w, PROTO_JSON_ESCAPED_MAX(n));
                        ck_assert_int_eq(out[w], '#');
                        if (mix == 1)
                                ck_assert_uint_eq(w, PROTO_JSON_ESCAPED_MAX(n));
                        proto_buf_reset(&b);
                        ck_assert_int_eq(proto_buf_append_str(&b, PREFIX), 0);
                        ck_assert_int_eq(proto_json_escape(&b, in, n), 0);
                        ck_assert_uint_eq(b.len, strlen(PREFIX) + w);
                        ck_assert(memcmp(b.data + strlen(PREFIX), out, w) == 0);
                }
        }
        proto_buf_free(&b);
}
END_TEST

/* ---- printable text (proto_printable) ---- */

#define P_QUOTED PROTO_PRINTABLE_QUOTED
#define P_ASCII PROTO_PRINTABLE_ASCII
#define P_CUT PROTO_PRINTABLE_ELLIPSIS
/* The three forms in use: the daemon's log lines, log_excerpt(), and a
 * client-chosen name in an error detail. */
#define P_LOG 0u
#define P_EXCERPT P_ASCII
#define P_DETAIL (P_QUOTED | P_ASCII | P_CUT)

static const struct printable_case {
        unsigned flags;
        const char *in;
        size_t len;
        const char *want;
} printable_cases[] = {
#define PC(flags, in, want)                                                                        \
        {                                                                                          \
                flags, in, sizeof(in) - 1, want                                                    \
        }
        /* Printable ASCII is copied in every form. */
        PC(P_LOG, "a Z~!{}", "a Z~!{}"),
        PC(P_EXCERPT, "a Z~!{}", "a Z~!{}"),
        PC(P_DETAIL, "a Z~!{}", "a Z~!{}"),
        PC(P_LOG, "", ""),
        /* Control characters and DEL are \xHH in every form. */
        PC(P_LOG, "\x00\x01\n\r\x1b\x1f\x7f", "\\x00\\x01\\x0a\\x0d\\x1b\\x1f\\x7f"),
        PC(P_EXCERPT, "a\nb\x7f", "a\\x0ab\\x7f"),
        PC(P_DETAIL, "a\nb\x7f", "a\\x0ab\\x7f"),
        /* UTF-8 and other high bytes: as they are in a log line, \xHH in
         * the ASCII forms. */
        PC(P_LOG, "caf\xc3\xa9 \xff\x80", "caf\xc3\xa9 \xff\x80"),
        PC(P_EXCERPT, "caf\xc3\xa9 \xff\x80", "caf\\xc3\\xa9 \\xff\\x80"),
        PC(P_DETAIL, "caf\xc3\xa9", "caf\\xc3\\xa9"),
        PC(P_QUOTED, "caf\xc3\xa9", "caf\xc3\xa9"),
        /* The quote and the backslash: as they are in a log line; the
         * backslash as \x5c in an excerpt; both escaped when quoted. */
        PC(P_LOG, "a\"b\\c", "a\"b\\c"),
        PC(P_EXCERPT, "a\"b\\c", "a\"b\\x5cc"),
        PC(P_DETAIL, "a\"b\\c", "a\\\"b\\\\c"),
        PC(P_QUOTED, "a\"b\\c", "a\\\"b\\\\c"),
        /* An escape-looking text stays tellable from an escape. */
        PC(P_EXCERPT, "\\x41", "\\x5cx41"),
        PC(P_DETAIL, "\\x41", "\\\\x41"),
#undef PC
};

START_TEST(test_printable_classes)
{
        const struct printable_case *c = &printable_cases[_i];
        char out[128];
        size_t w;

        memset(out, '#', sizeof(out));
        w = proto_printable(out, sizeof(out), c->in, c->len, c->flags);
        ck_assert_str_eq(out, c->want);
        ck_assert_uint_eq(w, strlen(c->want));
}
END_TEST

/* Every byte under every combination of flags: never a control
 * character or DEL in the copy, only printable ASCII with P_ASCII, and a
 * backslash only where an escape starts whenever one is escaped. */
START_TEST(test_printable_all_bytes)
{
        for (unsigned flags = 0; flags < 8; flags++) {
                for (int b = 0; b < 256; b++) {
                        char in = (char)b, out[8];
                        size_t w = proto_printable(out, sizeof(out), &in, 1, flags);
                        bool literal = w == 1;

                        ck_assert_uint_eq(w, strlen(out));
                        ck_assert(w == 1 || w == 2 || w == 4);
                        for (size_t i = 0; i < w; i++) {
                                unsigned char o = (unsigned char)out[i];

                                ck_assert(o >= 0x20 && o != 0x7f);
                                if (flags & P_ASCII)
                                        ck_assert(o < 0x7f);
                        }
                        if (b < 0x20 || b == 0x7f || (b >= 0x80 && (flags & P_ASCII))) {
                                char want[5];

                                snprintf(want, sizeof(want), "\\x%02x", b);
                                ck_assert_str_eq(out, want);
                        }
                        if ((b == '"' || b == '\\') && (flags & P_QUOTED)) {
                                ck_assert_uint_eq(w, 2);
                                ck_assert_int_eq(out[0], '\\');
                                ck_assert_int_eq(out[1], b);
                        }
                        if (b == '\\' && (flags & (P_QUOTED | P_ASCII)))
                                ck_assert(!literal);
                        if (b >= 0x20 && b < 0x7f && b != '"' && b != '\\')
                                ck_assert(literal && out[0] == in);
                }
        }
}
END_TEST

/* A cut at every size of the output buffer, in every form: the copy is
 * the longest run of whole escapes that fits with the NUL (and "..."
 * when cut, with P_CUT), and nothing past outsz is written. */
START_TEST(test_printable_cut)
{
        static const char in[] = "ab\"\\\x01\xc3\xa9z\x7f-tail\\x";
        const size_t n = sizeof(in) - 1;
        static const unsigned forms[] = { P_LOG, P_EXCERPT, P_DETAIL, P_QUOTED, P_CUT };

        for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
                unsigned flags = forms[f];
                size_t reserve = flags & P_CUT ? 4 : 1;
                size_t width[sizeof(in)], full_len;
                char full[256], out[256 + 1];

                full_len = proto_printable(full, sizeof(full), in, n, flags);
                for (size_t i = 0; i < n; i++) {
                        char one[8];

                        width[i] = proto_printable(one, sizeof(one), in + i, 1, flags);
                }
                for (size_t outsz = 0; outsz <= full_len + reserve + 2; outsz++) {
                        size_t k = 0, keep = 0, w;
                        char want[256 + 4];

                        while (k < n && keep + width[k] + reserve <= outsz)
                                keep += width[k++];
                        memcpy(want, full, keep);
                        if (k < n && (flags & P_CUT)) {
                                memcpy(want + keep, "...", 3);
                                keep += 3;
                        }
                        if (outsz < reserve)
                                keep = 0;
                        want[keep] = '\0';

                        memset(out, '#', sizeof(out));
                        w = proto_printable(out, outsz, in, n, flags);
                        ck_assert_int_eq(out[outsz], '#'); /* nothing past outsz */
                        if (outsz == 0) {
                                ck_assert_uint_eq(w, 0);
                                continue;
                        }
                        ck_assert_msg(strcmp(out, want) == 0,
                                      "flags %u, outsz %zu: \"%s\", not \"%s\"", flags, outsz, out,
                                      want);
                        ck_assert_uint_eq(w, keep);
                        ck_assert_uint_lt(w, outsz);
                }
                /* Room for all: no "...", even with P_CUT. */
                ck_assert_ptr_null(strstr(full, "..."));
        }
}
END_TEST

/* Hand-checked cuts of the detail and log forms. */
START_TEST(test_printable_cut_examples)
{
        char out[16];

        ck_assert_uint_eq(proto_printable(out, 8, "abcdefgh", 8, P_DETAIL), 7);
        ck_assert_str_eq(out, "abcd...");
        ck_assert_uint_eq(proto_printable(out, 9, "abcdefgh", 8, P_DETAIL), 8);
        ck_assert_str_eq(out, "abcde...");
        ck_assert_uint_eq(proto_printable(out, 12, "abcdefgh", 8, P_DETAIL), 8);
        ck_assert_str_eq(out, "abcdefgh");
        /* An escape is never split: \x01 needs four bytes. */
        ck_assert_uint_eq(proto_printable(out, 7, "abc\x01", 4, P_LOG), 3);
        ck_assert_str_eq(out, "abc");
        ck_assert_uint_eq(proto_printable(out, 8, "abc\x01", 4, P_LOG), 7);
        ck_assert_str_eq(out, "abc\\x01");
        ck_assert_uint_eq(proto_printable(out, 8, "ab\"", 3, P_DETAIL), 4);
        ck_assert_str_eq(out, "ab\\\"");
        /* Too small for "...": empty. */
        ck_assert_uint_eq(proto_printable(out, 3, "abc", 3, P_DETAIL), 0);
        ck_assert_str_eq(out, "");
        ck_assert_uint_eq(proto_printable(out, 1, "abc", 3, P_LOG), 0);
        ck_assert_str_eq(out, "");
}
END_TEST

/* ---- UTF-8 ---- */

/* The reference: decode the code point, then judge it (RFC 3629), a
 * different formulation from proto_utf8_seq's table of byte ranges. */
static bool ref_utf8_valid(const unsigned char *s, size_t n)
{
        size_t i = 0;

        while (i < n) {
                unsigned char c = s[i];
                uint32_t cp;
                size_t len;

                if (c < 0x80) {
                        i++;
                        continue;
                }
                if (c >= 0xc0 && c <= 0xdf) {
                        len = 2;
                        cp = c & 0x1f;
                } else if (c >= 0xe0 && c <= 0xef) {
                        len = 3;
                        cp = c & 0x0f;
                } else if (c >= 0xf0 && c <= 0xf7) {
                        len = 4;
                        cp = c & 0x07;
                } else {
                        return false;
                }
                if (n - i < len)
                        return false;
                for (size_t k = 1; k < len; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (s[i + k] & 0x3f);
                }
                if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
                    (len == 4 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += len;
        }
        return true;
}

/* proto_utf8_valid on s, alone and behind 7 and 8 ASCII bytes (so it
 * meets the word-at-a-time ASCII skip), agrees with the reference.
 * Plain ifs: ck_assert marks its point on success too, which costs a
 * write(2) per call in this loop of millions. */
static void check_utf8(const unsigned char *s, size_t n, bool prefixed)
{
        unsigned char buf[16];
        bool want = ref_utf8_valid(s, n);

        if (proto_utf8_valid((const char *)s, n) != want)
                ck_abort_msg("%zu bytes %02x %02x %02x %02x: want %d", n, s[0], n > 1 ? s[1] : 0,
                             n > 2 ? s[2] : 0, n > 3 ? s[3] : 0, want);
        if (!prefixed)
                return;
        for (size_t pre = 7; pre <= 8; pre++) {
                memset(buf, 'a', pre);
                memcpy(buf + pre, s, n);
                if (proto_utf8_valid((const char *)buf, pre + n) != want)
                        ck_abort_msg("%zu bytes %02x %02x after %zu ASCII: want %d", n, s[0],
                                     n > 1 ? s[1] : 0, pre, want);
        }
}

START_TEST(test_utf8_valid)
{
        static const unsigned char edges[] = { 0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f,
                                               0xa0, 0xbf, 0xc0, 0xc2, 0xf4, 0xff };
        static const char mixed[] = "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf";
        unsigned char s[4];

        /* Every string of one and two bytes, every three-byte one that
         * starts a sequence; four-byte ones over the byte ranges' edges. */
        for (unsigned a = 0; a < 256; a++) {
                s[0] = (unsigned char)a;
                check_utf8(s, 1, true);
                for (unsigned b = 0; b < 256; b++) {
                        s[1] = (unsigned char)b;
                        check_utf8(s, 2, true);
                        if (a < 0xc0)
                                continue;
                        for (unsigned c = 0; c < 256; c++) {
                                s[2] = (unsigned char)c;
                                check_utf8(s, 3, false);
                        }
                }
        }
        for (unsigned a = 0xf0; a <= 0xf8; a++)
                for (size_t i = 0; i < sizeof(edges); i++)
                        for (size_t j = 0; j < sizeof(edges); j++)
                                for (size_t k = 0; k < sizeof(edges); k++) {
                                        s[0] = (unsigned char)a;
                                        s[1] = edges[i];
                                        s[2] = edges[j];
                                        s[3] = edges[k];
                                        check_utf8(s, 4, true);
                                }
        ck_assert(proto_utf8_valid("", 0));
        ck_assert(proto_utf8_valid("plain ascii, longer than a word", 31));
        ck_assert(proto_utf8_valid(mixed, sizeof(mixed) - 1));
        ck_assert(!proto_utf8_valid("0123456789abcdef\xc3", 17)); /* truncated at the end */
        ck_assert(!proto_utf8_valid("\xed\xa0\x80", 3));          /* surrogate */
        ck_assert(!proto_utf8_valid("\xf8\x88\x80\x80\x80", 5));
}
END_TEST

/* ---- ids ---- */

START_TEST(test_uuid)
{
        uint8_t ff[16];
        char buf[PROTO_UUID_LEN + 1];

        proto_uuid_format(rnd, buf);
        ck_assert_str_eq(buf, RND_UUID);
        memset(ff, 0xff, sizeof(ff));
        proto_uuid_format(ff, buf);
        ck_assert_str_eq(buf, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        memset(ff, 0, sizeof(ff));
        proto_uuid_format(ff, buf);
        ck_assert_str_eq(buf, "00000000-0000-4000-8000-000000000000");
        ck_assert(proto_event_id_valid(buf, strlen(buf)));
}
END_TEST

START_TEST(test_event_id)
{
        ck_assert(proto_event_id_valid("a", 1));
        ck_assert(proto_event_id_valid("AZaz09._:-", 10));
        ck_assert(proto_event_id_valid(X64, 64));
        ck_assert(!proto_event_id_valid(X64 "x", 65));
        ck_assert(!proto_event_id_valid("", 0));
        ck_assert(!proto_event_id_valid("a b", 3));
        ck_assert(!proto_event_id_valid("a+b", 3));
        ck_assert(!proto_event_id_valid("a\0b", 3));
        ck_assert(!proto_event_id_valid("\xc3\xa9", 2));
        ck_assert(!proto_event_id_valid(NULL, 1));
}
END_TEST

/* ---- batches ---- */

START_TEST(test_batch)
{
        static const char *const lines[] = {
                EV(",\"payload\":{\"n\":1}"),
                "{\"type\":\"identify\",\"user_id\":\"u2\"}",
                EV(",\"event_id\":\"fixed\",\"occurred_at\":1.5"),
        };
        struct proto_buf ev = { 0 }, b = { 0 };
        struct proto_msg msg;
        struct proto_error err;
        size_t starts[4];
        json_error_t je;
        json_t *v, *events;
        char id[PROTO_UUID_LEN + 1];

        for (size_t i = 0; i < 3; i++) {
                starts[i] = ev.len;
                ck_assert_int_eq(proto_parse(lines[i], strlen(lines[i]), PROTO_MAX_MESSAGE_BYTES,
                                             NOW_MS, rnd, &ev, &msg, &err),
                                 0);
        }
        starts[3] = ev.len;

        /* An empty batch is exactly the advertised overhead. */
        proto_uuid_format(rnd, id);
        ck_assert_int_eq(proto_batch_begin(&b, id, NOW_MS), 0);
        ck_assert_int_eq(proto_batch_end(&b), 0);
        ck_assert_uint_eq(b.len, PROTO_BATCH_OVERHEAD);
        ck_assert(memcmp(b.data,
                         "{\"batch_id\":\"" RND_UUID "\",\"sent_at\":\"" NOW_STR
                         "\",\"events\":[]}",
                         b.len) == 0);

        proto_buf_reset(&b);
        ck_assert_int_eq(proto_batch_begin(&b, id, NOW_MS), 0);
        for (size_t i = 0; i < 3; i++)
                ck_assert_int_eq(
                        proto_batch_add(&b, ev.data + starts[i], starts[i + 1] - starts[i], i == 0),
                        0);
        ck_assert_int_eq(proto_batch_end(&b), 0);
        ck_assert_uint_eq(b.len, PROTO_BATCH_OVERHEAD + ev.len + 2);

        v = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, &je);
        ck_assert_msg(v != NULL, "%s: %.*s", je.text, (int)b.len, b.data);
        ck_assert_str_eq(json_string_value(json_object_get(v, "batch_id")), RND_UUID);
        ck_assert_str_eq(json_string_value(json_object_get(v, "sent_at")), NOW_STR);
        events = json_object_get(v, "events");
        ck_assert_uint_eq(json_array_size(events), 3);
        ck_assert_str_eq(
                json_string_value(json_object_get(json_array_get(events, 1), "event_type")),
                "context_identified");
        ck_assert_str_eq(
                json_string_value(json_object_get(json_array_get(events, 2), "occurred_at")),
                "1970-01-01T00:00:01.500Z");
        ck_assert_int_eq(json_integer_value(json_object_get(
                                 json_object_get(json_array_get(events, 0), "payload"), "n")),
                         1);
        json_decref(v);

        /* sent_at is rewritten in place, once the first attempt is due;
         * nothing else moves. */
        {
                char *before = malloc(b.len);
                size_t at = strlen("{\"batch_id\":\"" RND_UUID "\",\"sent_at\":\"");

                ck_assert_ptr_nonnull(before);
                memcpy(before, b.data, b.len);
                ck_assert_int_eq(proto_batch_set_sent_at(b.data, b.len, 1500), 0);
                ck_assert(memcmp(b.data + at, "1970-01-01T00:00:01.500Z", PROTO_TIME_LEN) == 0);
                ck_assert(memcmp(b.data, before, at) == 0);
                ck_assert(memcmp(b.data + at + PROTO_TIME_LEN, before + at + PROTO_TIME_LEN,
                                 b.len - at - PROTO_TIME_LEN) == 0);
                /* Not a batch envelope, or one cut short: refused, untouched. */
                memcpy(before, b.data, b.len);
                ck_assert_int_eq(proto_batch_set_sent_at(b.data, at + 3, NOW_MS), -EINVAL);
                ck_assert_int_eq(proto_batch_set_sent_at(b.data + 1, b.len - 1, NOW_MS), -EINVAL);
                ck_assert_int_eq(proto_batch_set_sent_at(NULL, 0, NOW_MS), -EINVAL);
                ck_assert(memcmp(b.data, before, b.len) == 0);
                free(before);
        }

        ck_assert_int_eq(proto_batch_begin(&b, NULL, 0), -EINVAL);
        proto_buf_free(&ev);
        proto_buf_free(&b);
}
END_TEST

START_TEST(test_buf)
{
        struct proto_buf b = { 0 };

        for (int i = 0; i < 1000; i++)
                ck_assert_int_eq(proto_buf_append(&b, "0123456789", 10), 0);
        ck_assert_uint_eq(b.len, 10000);
        ck_assert_uint_ge(b.cap, b.len);
        ck_assert_int_eq(proto_buf_reserve(&b, SIZE_MAX), -ENOMEM);
        ck_assert_uint_eq(b.len, 10000);
        proto_buf_reset(&b);
        ck_assert_uint_eq(b.len, 0);
        ck_assert_ptr_nonnull(b.data);
        proto_buf_free(&b);
        ck_assert_ptr_null(b.data);
        ck_assert_uint_eq(b.cap, 0);
}
END_TEST

static Suite *proto_suite(void)
{
        Suite *s = suite_create("proto");
        TCase *tc;

        tc = tcase_create("reject");
        tcase_add_loop_test(tc, test_reject, 0, sizeof(bad_cases) / sizeof(bad_cases[0]));
        tcase_add_test(tc, test_reject_count);
        tcase_add_test(tc, test_detail);
        tcase_add_test(tc, test_reason_names);
        suite_add_tcase(s, tc);

        tc = tcase_create("limits");
        tcase_add_test(tc, test_oversize);
        tcase_add_test(tc, test_oversize_big);
        tcase_add_test(tc, test_depth);
        tcase_add_test(tc, test_depth_strings);
        suite_add_tcase(s, tc);

        tc = tcase_create("normalise");
        tcase_add_loop_test(tc, test_golden, 0, sizeof(good_cases) / sizeof(good_cases[0]));
        tcase_add_loop_test(tc, test_output_is_json, 0, sizeof(good_cases) / sizeof(good_cases[0]));
        suite_add_tcase(s, tc);

        tc = tcase_create("ops");
        tcase_add_loop_test(tc, test_ops, 0, sizeof(op_cases) / sizeof(op_cases[0]));
        suite_add_tcase(s, tc);

        tc = tcase_create("time");
        tcase_add_test(tc, test_time_format);
        tcase_add_test(tc, test_time_roundtrip);
        tcase_add_test(tc, test_time_parse);
        suite_add_tcase(s, tc);

        tc = tcase_create("escape");
        tcase_add_test(tc, test_escape);
        tcase_add_test(tc, test_escape_all_bytes);
        tcase_add_test(tc, test_escape_to);
        suite_add_tcase(s, tc);

        tc = tcase_create("printable");
        tcase_add_loop_test(tc, test_printable_classes, 0,
                            sizeof(printable_cases) / sizeof(printable_cases[0]));
        tcase_add_test(tc, test_printable_all_bytes);
        tcase_add_test(tc, test_printable_cut);
        tcase_add_test(tc, test_printable_cut_examples);
        suite_add_tcase(s, tc);

        tc = tcase_create("utf8");
        tcase_add_test(tc, test_utf8_valid);
        suite_add_tcase(s, tc);

        tc = tcase_create("ids");
        tcase_add_test(tc, test_uuid);
        tcase_add_test(tc, test_event_id);
        suite_add_tcase(s, tc);

        tc = tcase_create("batch");
        tcase_add_test(tc, test_batch);
        tcase_add_test(tc, test_buf);
        suite_add_tcase(s, tc);

        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(proto_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
