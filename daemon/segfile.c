/* segfile.c - segment headers, record framing, and the scan that finds
 * intact records and steps over damage.
 *
 *   header (40):  "SEGOPSPL" | u32 version 1 | u32 40 | u64 first_seq |
 *                 u64 created (wall ms) | u32 crc32c(bytes 0..31) | u32 0
 *   record (20+): u32 magic "sgR1" | u32 len | u64 seq |
 *                 u32 crc32c(len, seq, event) | event bytes
 *
 * The checksum is CRC-32C (crc32c.c: SSE4.2 where the CPU has it). A record is
 * taken only when its magic, length bound and CRC all hold, so a scan
 * that lost its footing inside damaged bytes tries every byte offset
 * until one does: damage costs the records it touches, never the rest
 * of the file.
 */
#include "segfile.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "crc32c.h"

static const char header_magic[8] = { 'S', 'E', 'G', 'O', 'P', 'S', 'P', 'L' };
static const char record_magic[4] = { 's', 'g', 'R', '1' };
#define SEGFILE_VERSION 1

static uint32_t crc_of(uint32_t crc, const char *p, size_t n)
{
        return crc32c(crc, p, n);
}

void segfile_header(char out[SEGFILE_HEADER_LEN], uint64_t first_seq, int64_t created_ms)
{
        memset(out, 0, SEGFILE_HEADER_LEN);
        memcpy(out, header_magic, sizeof(header_magic));
        le_put32(out + 8, SEGFILE_VERSION);
        le_put32(out + 12, SEGFILE_HEADER_LEN);
        le_put64(out + 16, first_seq);
        le_put64(out + 24, (uint64_t)created_ms);
        le_put32(out + 32, crc_of(0, out, 32));
}

int segfile_parse_header(const char *p, size_t len, uint64_t *ret_first_seq,
                         int64_t *ret_created_ms)
{
        if (len < SEGFILE_HEADER_LEN || memcmp(p, header_magic, sizeof(header_magic)) != 0 ||
            le_get32(p + 8) != SEGFILE_VERSION || le_get32(p + 12) != SEGFILE_HEADER_LEN ||
            le_get32(p + 32) != crc_of(0, p, 32))
                return -EINVAL;
        *ret_first_seq = le_get64(p + 16);
        *ret_created_ms = (int64_t)le_get64(p + 24);
        return 0;
}

void segfile_name(char out[SEGFILE_NAME_LEN], uint64_t first_seq)
{
        snprintf(out, SEGFILE_NAME_LEN, "%020llu.seg", (unsigned long long)first_seq);
}

int segfile_parse_name(const char *name, uint64_t *ret_first_seq)
{
        uint64_t v = 0;

        if (strlen(name) != SEGFILE_NAME_LEN - 1 || strcmp(name + 20, ".seg") != 0)
                return -EINVAL;
        for (int i = 0; i < 20; i++) {
                if (name[i] < '0' || name[i] > '9' || v > (UINT64_MAX - 9) / 10)
                        return -EINVAL;
                v = v * 10 + (uint64_t)(name[i] - '0');
        }
        *ret_first_seq = v;
        return 0;
}

int segfile_append(struct proto_buf *b, uint64_t seq, const char *ev, size_t len)
{
        char *h;
        uint32_t crc;
        int r;

        if (len > SEGFILE_RECORD_MAX)
                return -EMSGSIZE;
        r = proto_buf_reserve(b, segfile_record_size(len));
        if (r < 0)
                return r;
        h = b->data + b->len;
        memcpy(h, record_magic, sizeof(record_magic));
        le_put32(h + 4, (uint32_t)len);
        le_put64(h + 8, seq);
        crc = crc_of(0, h + 4, 12);
        le_put32(h + 16, crc_of(crc, ev, len));
        memcpy(h + SEGFILE_RECORD_HEAD, ev, len);
        b->len += segfile_record_size(len);
        return 0;
}

/* What sits at p (n bytes available): an intact record (1), damage (0),
 * or a record that may be intact once more bytes come (-1). */
static int check_record(const char *p, size_t n, struct segfile_rec *rec)
{
        uint32_t len;

        if (n < sizeof(record_magic))
                return memcmp(p, record_magic, n) == 0 ? -1 : 0;
        if (memcmp(p, record_magic, sizeof(record_magic)) != 0)
                return 0;
        if (n < SEGFILE_RECORD_HEAD)
                return -1;
        len = le_get32(p + 4);
        if (len > SEGFILE_RECORD_MAX)
                return 0;
        if (n < segfile_record_size(len))
                return -1;
        if (crc_of(crc_of(0, p + 4, 12), p + SEGFILE_RECORD_HEAD, len) != le_get32(p + 16))
                return 0;
        rec->seq = le_get64(p + 8);
        rec->data = p + SEGFILE_RECORD_HEAD;
        rec->len = len;
        return 1;
}

enum segfile_next segfile_next(const char *buf, size_t len, bool eof, size_t *off,
                               struct segfile_rec *rec, uint64_t *skipped)
{
        size_t o = *off;

        while (o < len) {
                int r = check_record(buf + o, len - o, rec);

                if (r == 1) {
                        rec->off = o;
                        *off = o + segfile_record_size(rec->len);
                        return SEGFILE_RECORD;
                }
                if (r < 0 && !eof) {
                        *off = o;
                        return SEGFILE_MORE;
                }
                /* Damage: on to the next possible magic. */
                const char *m = memchr(buf + o + 1, record_magic[0], len - o - 1);
                size_t next = m ? (size_t)(m - buf) : len;

                *skipped += next - o;
                o = next;
        }
        *off = o;
        return SEGFILE_END;
}
