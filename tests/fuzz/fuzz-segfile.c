/* fuzz-segfile.c - libFuzzer target for the spool's segment scan
 * (daemon/segfile.c): any bytes, as a damaged segment file could hold.
 *
 * Invariants: no read outside the buffer (the sanitizers check); every
 * record returned is intact (re-encoding it gives the same bytes); the
 * scan of the whole buffer and a scan fed in two pieces (as the reader
 * reads in chunks) find the same records; skipped bytes plus record
 * bytes account for the whole buffer.
 */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "segfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RECORDS 4096

struct found {
        uint64_t seq[MAX_RECORDS];
        size_t off[MAX_RECORDS];
        size_t n;
        uint64_t skipped;
        size_t record_bytes;
};

static void check_intact(const char *buf, const struct segfile_rec *rec)
{
        struct proto_buf b = { 0 };

        if (segfile_append(&b, rec->seq, rec->data, rec->len) == 0) {
                assert(b.len == segfile_record_size(rec->len));
                assert(memcmp(b.data, buf + rec->off, b.len) == 0);
        }
        proto_buf_free(&b);
}

static void scan_whole(const char *buf, size_t len, struct found *f)
{
        struct segfile_rec rec;
        size_t off = 0;

        memset(f, 0, sizeof(*f));
        while (segfile_next(buf, len, true, &off, &rec, &f->skipped) == SEGFILE_RECORD) {
                check_intact(buf, &rec);
                if (f->n < MAX_RECORDS) {
                        f->seq[f->n] = rec.seq;
                        f->off[f->n] = rec.off;
                }
                f->n++;
                f->record_bytes += segfile_record_size(rec.len);
        }
        assert(off == len);
        assert(f->skipped + f->record_bytes == len);
}

/* The reader's way: the first `cut` bytes without eof, then all. */
static void scan_in_two(const char *buf, size_t len, size_t cut, struct found *f)
{
        struct segfile_rec rec;
        size_t off = 0;
        enum segfile_next r;

        memset(f, 0, sizeof(*f));
        while ((r = segfile_next(buf, cut, false, &off, &rec, &f->skipped)) == SEGFILE_RECORD) {
                if (f->n < MAX_RECORDS)
                        f->seq[f->n] = rec.seq;
                f->n++;
        }
        assert(off <= cut);
        while (segfile_next(buf, len, true, &off, &rec, &f->skipped) == SEGFILE_RECORD) {
                if (f->n < MAX_RECORDS)
                        f->seq[f->n] = rec.seq;
                f->n++;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct found whole, two;
        const char *buf = (const char *)data;
        uint64_t first;
        int64_t created;

        (void)segfile_parse_header(buf, size, &first, &created);
        scan_whole(buf, size, &whole);
        scan_in_two(buf, size, size / 2, &two);
        assert(two.n == whole.n);
        for (size_t i = 0; i < whole.n && i < MAX_RECORDS; i++)
                assert(two.seq[i] == whole.seq[i]);
        return 0;
}

/* Seeds for the standalone runner: segments of a few records. */
size_t fuzz_seed(unsigned i, uint8_t *out, size_t cap);
size_t fuzz_seed(unsigned i, uint8_t *out, size_t cap)
{
        struct proto_buf b = { 0 };
        char ev[128];
        size_t n = 0;

        if (i >= 4)
                return 0;
        (void)proto_buf_reserve(&b, SEGFILE_HEADER_LEN);
        segfile_header(b.data, 100, 1700000000000);
        b.len = SEGFILE_HEADER_LEN;
        for (unsigned k = 0; k < 1 + 5 * i; k++) {
                int len = snprintf(ev, sizeof(ev), "{\"event_id\":\"e%u\",\"pad\":\"%.*s\"}", k,
                                   (int)(k * 7 % 60),
                                   "................................"
                                   "............................");

                (void)segfile_append(&b, 100 + k, ev, (size_t)len);
        }
        if (b.len <= cap) {
                memcpy(out, b.data, b.len);
                n = b.len;
        }
        proto_buf_free(&b);
        return n;
}
