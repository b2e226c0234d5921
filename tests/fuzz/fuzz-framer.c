/* fuzz-framer.c - libFuzzer target for the stream and datagram framing
 * of daemon/framer.c, against a reference splitter written here.
 *
 * The input: two bytes choosing max_line (1..4096), two seeding the
 * read sizes, then the bytes a client sends. The stream is fed to a
 * framer the way conn.c does (framer_space, a read of a size derived
 * from the input, sometimes 0 bytes, framer_commit, every line taken,
 * framer_finish at the end) and every line must be the reference's:
 * the same bytes between newlines, numbered from 1, oversize exactly
 * when its message (a final \r aside) is longer than max_line. The same
 * bytes as one datagram must give the reference's lines too.
 */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "framer.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HEADER 4

/* The reference: the next line of p[0..n) from *pos, the way SPEC 2
 * defines one: up to a newline, or a last one without (a stream at its
 * end, a datagram), nothing after a final newline. 1 with start and
 * length set, or 0 at the end. */
static int ref_next(const char *p, size_t n, size_t *pos, size_t *ret_start, size_t *ret_len)
{
        size_t i = *pos;

        if (i >= n)
                return 0;
        while (i < n && p[i] != '\n')
                i++;
        *ret_start = *pos;
        *ret_len = i - *pos;
        *pos = i + 1;
        return 1;
}

static bool ref_oversize(const char *line, size_t len, size_t max_line)
{
        return proto_message_len(line, len) > max_line;
}

static uint64_t next(uint64_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

static void check_line(const struct framer_line *l, const char *in, size_t n, size_t *ref_pos,
                       uint64_t *ref_no, size_t max_line)
{
        size_t start, len;

        assert(ref_next(in, n, ref_pos, &start, &len) == 1);
        assert(l->line_no == ++*ref_no);
        assert(l->oversize == ref_oversize(in + start, len, max_line));
        /* The len of a discarded line is what was left of it (conn.c
         * uses neither data nor len then). */
        if (l->oversize)
                assert(l->data == NULL);
        else
                assert(l->len == len && l->data && !memcmp(l->data, in + start, len));
}

static void stream(const char *in, size_t n, size_t max_line, uint64_t rng)
{
        struct framer f;
        struct framer_line l;
        size_t fed = 0, ref_pos = 0, start, len;
        uint64_t ref_no = 0;
        unsigned spins = 0;

        if (framer_init(&f, max_line) < 0)
                return;
        while (fed < n) {
                char *p;
                size_t room, take;
                uint64_t r = next(&rng);

                framer_space(&f, &p, &room);
                assert(room > 0);
                /* Mostly short reads, some as large as the room allows,
                 * now and then none (libuv's alloc without data). */
                take = r % 8 == 0 ? room : 1 + (size_t)(r >> 8) % 97;
                if (r % 23 == 0 && spins++ < 1000)
                        take = 0;
                if (take > room)
                        take = room;
                if (take > n - fed)
                        take = n - fed;
                memcpy(p, in + fed, take);
                framer_commit(&f, take);
                fed += take;
                while (framer_next(&f, &l))
                        check_line(&l, in, n, &ref_pos, &ref_no, max_line);
                assert(framer_pending(&f) <= max_line + 2 + 16384);
        }
        if (framer_finish(&f, &l))
                check_line(&l, in, n, &ref_pos, &ref_no, max_line);
        assert(framer_finish(&f, &l) == 0);
        assert(ref_next(in, n, &ref_pos, &start, &len) == 0);
        assert(framer_pending(&f) == 0);
        framer_free(&f);
}

static void datagram(const char *in, size_t n)
{
        struct framer_line l;
        size_t pos = 0, ref_pos = 0, start, len;
        uint64_t no = 0;

        while (framer_datagram_next(in, n, &pos, &l)) {
                assert(ref_next(in, n, &ref_pos, &start, &len) == 1);
                assert(l.line_no == ++no && !l.oversize);
                assert(l.data == in + start && l.len == len);
        }
        assert(ref_next(in, n, &ref_pos, &start, &len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        size_t max_line, n;
        uint64_t rng;
        char *in;

        if (size < HEADER)
                return 0;
        max_line = 1 + ((size_t)data[0] | (size_t)data[1] << 8) % 4096;
        rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)data[2] << 32 | (uint64_t)data[3] << 40);
        n = size - HEADER;
        /* An exact-size copy, so the sanitizers catch a read past it. */
        in = malloc(n ? n : 1);
        if (!in)
                return 0;
        memcpy(in, data + HEADER, n);
        stream(in, n, max_line, rng);
        datagram(in, n);
        free(in);
        return 0;
}
