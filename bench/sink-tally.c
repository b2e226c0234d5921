/* sink-tally.c - the sink's bookkeeping: which event ids arrived, how
 * often, and when.
 *
 * A batch body (gunzipped first when it came gzip) is scanned for every
 * "event_id":"…" value, and ids of the form e<N>, N < expect, are
 * recorded in a bitmap, so the benchmark can tell how many distinct
 * events arrived and how many came twice; other ids are only counted as
 * foreign. A scan rather than a JSON parser is deliberate: the daemon
 * writes compact JSON and the sink must not be the bottleneck. The
 * totals, with the CLOCK_MONOTONIC times of the sink's start and of the
 * first and the last arrival, are what /_count and the final report
 * print. The sink answers every batch it can read with 200, so the first
 * arrival is also the first request that succeeded: after an outage,
 * last_ns - first_ns is how long the daemon took to deliver what it
 * held, and first_ns - started_ns how long it took to notice.
 */
#include "sink-tally.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define MAX_PLAIN_BYTES (32u * 1024 * 1024)

int tally_init(struct tally *t, uint64_t expect)
{
        *t = (struct tally){ .expect = expect, .n.started_ns = bench_now_ns() };
        t->seen = calloc((size_t)(expect + 7) / 8, 1);
        return t->seen ? 0 : -ENOMEM;
}

void tally_free(struct tally *t)
{
        free(t->plain);
        free(t->seen);
        t->plain = NULL;
        t->seen = NULL;
}

/* Record one id. Returns true when it was new (or foreign: the upstream
 * would accept those too). */
static bool record_id(struct tally *t, const char *v, size_t len)
{
        uint64_t id = 0;
        size_t i;

        t->n.events++;
        if (len < 2 || len > 20 || v[0] != 'e')
                goto foreign;
        for (i = 1; i < len; i++) {
                if (v[i] < '0' || v[i] > '9')
                        goto foreign;
                id = id * 10 + (uint64_t)(v[i] - '0');
                if (id >= t->expect)
                        goto foreign;
        }
        if (t->seen[id >> 3] & (1u << (id & 7))) {
                t->n.duplicates++;
                return false;
        }
        t->seen[id >> 3] |= (uint8_t)(1u << (id & 7));
        t->n.unique++;
        return true;
foreign:
        t->n.foreign++;
        return true;
}

/* Find every "event_id" : "value" in body; count new ones and repeats. */
static void scan_ids(struct tally *t, const char *body, size_t len, uint64_t *ret_accepted,
                     uint64_t *ret_dups)
{
        static const char key[] = "\"event_id\"";
        const char *p = body, *end = body + len;
        uint64_t acc = 0, dup = 0;

        while (p < end) {
                const char *hit = memmem(p, (size_t)(end - p), key, sizeof(key) - 1);
                const char *v;

                if (!hit)
                        break;
                p = hit + sizeof(key) - 1;
                while (p < end && (*p == ' ' || *p == '\t'))
                        p++;
                if (p >= end || *p != ':')
                        continue; /* "event_id" as a value, not a key */
                p++;
                while (p < end && (*p == ' ' || *p == '\t'))
                        p++;
                if (p >= end || *p != '"')
                        continue;
                v = ++p;
                while (p < end && *p != '"' && *p != '\\')
                        p++;
                if (p >= end)
                        break;
                if (record_id(t, v, (size_t)(p - v)))
                        acc++;
                else
                        dup++;
        }
        *ret_accepted = acc;
        *ret_dups = dup;
}

/* Gunzip in into t->plain. Returns the length, or -EBADMSG / -EFBIG /
 * -ENOMEM. */
static long gunzip(struct tally *t, const char *in, size_t len)
{
        z_stream z;
        long r;
        int zr;

        memset(&z, 0, sizeof(z));
        if (inflateInit2(&z, 15 + 16) != Z_OK)
                return -ENOMEM;
        z.next_in = (Bytef *)(uintptr_t)in;
        z.avail_in = (uInt)len;
        for (;;) {
                if (z.total_out == t->plain_cap) {
                        size_t cap = t->plain_cap ? t->plain_cap * 2 : 1u << 20;
                        char *p;

                        if (t->plain_cap >= MAX_PLAIN_BYTES) {
                                r = -EFBIG;
                                goto out;
                        }
                        if (cap > MAX_PLAIN_BYTES)
                                cap = MAX_PLAIN_BYTES;
                        p = realloc(t->plain, cap);
                        if (!p) {
                                r = -ENOMEM;
                                goto out;
                        }
                        t->plain = p;
                        t->plain_cap = cap;
                }
                z.next_out = (Bytef *)t->plain + z.total_out;
                z.avail_out = (uInt)(t->plain_cap - z.total_out);
                zr = inflate(&z, Z_NO_FLUSH);
                if (zr == Z_STREAM_END)
                        break;
                if (zr != Z_OK && zr != Z_BUF_ERROR) {
                        r = -EBADMSG;
                        goto out;
                }
                if (zr == Z_BUF_ERROR && z.avail_in == 0) {
                        r = -EBADMSG; /* truncated */
                        goto out;
                }
        }
        r = (long)z.total_out;
out:
        inflateEnd(&z);
        return r;
}

int tally_batch(struct tally *t, const char *body, size_t len, bool gzip, uint64_t *ret_accepted,
                uint64_t *ret_duplicates)
{
        uint64_t now;

        t->n.requests++;
        t->n.bytes += len;
        if (gzip) {
                long plain = gunzip(t, body, len);

                if (plain < 0)
                        return (int)plain;
                body = t->plain;
                len = (size_t)plain;
        }
        scan_ids(t, body, len, ret_accepted, ret_duplicates);
        if (*ret_accepted + *ret_duplicates > 0) {
                now = bench_now_ns();
                if (t->n.first_ns == 0)
                        t->n.first_ns = now;
                t->n.last_ns = now;
        }
        return 0;
}

int tally_format(const struct tally *t, char *buf, size_t len)
{
        int r = snprintf(buf, len,
                         "{\"unique\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"foreign\":%" PRIu64
                         ",\"events\":%" PRIu64 ",\"requests\":%" PRIu64 ",\"bytes\":%" PRIu64
                         ",\"expect\":%" PRIu64 ",\"started_ns\":%" PRIu64 ",\"first_ns\":%" PRIu64
                         ",\"last_ns\":%" PRIu64 "}",
                         t->n.unique, t->n.duplicates, t->n.foreign, t->n.events, t->n.requests,
                         t->n.bytes, t->expect, t->n.started_ns, t->n.first_ns, t->n.last_ns);
        if (r < 0 || (size_t)r >= len)
                return -ENOSPC;
        return r;
}
