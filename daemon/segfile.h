/* segfile.h - the on-disk format of the spool's segment files: a header,
 * then records, each framed with a magic, its length, its event's seq
 * and a CRC-32 over all of it, so that a reader finds every intact
 * record and resynchronises after damage (a torn tail, overwritten or
 * missing bytes, a file that is not a segment at all).
 *
 * Pure functions on byte buffers: no I/O (spool.c reads and writes).
 * All integers are little-endian. The format is described for people in
 * docs/SPOOL.md.
 */
#ifndef SEGOPSD_SEGFILE_H
#define SEGOPSD_SEGFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define SEGFILE_HEADER_LEN 40
#define SEGFILE_RECORD_HEAD 20                /* magic, len, seq, crc */
#define SEGFILE_RECORD_MAX (4u * 1024 * 1024) /* an event's bytes, at most */
#define SEGFILE_NAME_LEN 25                   /* "%020llu.seg" + NUL */

/* Little-endian integers, as every field of the spool's files is. */
static inline void le_put32(char *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (char)(v >> (8 * i));
}

static inline void le_put64(char *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (char)(v >> (8 * i));
}

static inline uint32_t le_get32(const char *p)
{
        uint32_t v = 0;

        for (int i = 3; i >= 0; i--)
                v = v << 8 | (unsigned char)p[i];
        return v;
}

static inline uint64_t le_get64(const char *p)
{
        uint64_t v = 0;

        for (int i = 7; i >= 0; i--)
                v = v << 8 | (unsigned char)p[i];
        return v;
}

/* The header: which seq the file starts with (a hint: every record
 * carries its own) and when it was made (wall ms: the age of what it
 * holds). 0 or -EINVAL (not a segment header, or damaged). */
void segfile_header(char out[SEGFILE_HEADER_LEN], uint64_t first_seq, int64_t created_ms);
int segfile_parse_header(const char *p, size_t len, uint64_t *ret_first_seq,
                         int64_t *ret_created_ms);

/* A segment's file name, from the first seq it holds: names sort in seq
 * order. segfile_parse_name gives the seq back, or -EINVAL for a name
 * that is not a segment's. */
void segfile_name(char out[SEGFILE_NAME_LEN], uint64_t first_seq);
int segfile_parse_name(const char *name, uint64_t *ret_first_seq);

/* Append one record (event ev[0..len) as seq) to b. 0 or -ENOMEM,
 * -EMSGSIZE beyond SEGFILE_RECORD_MAX. */
int segfile_append(struct proto_buf *b, uint64_t seq, const char *ev, size_t len);

static inline size_t segfile_record_size(size_t len)
{
        return SEGFILE_RECORD_HEAD + len;
}

struct segfile_rec {
        uint64_t seq;
        const char *data; /* the event, inside the buffer scanned */
        uint32_t len;
        size_t off; /* where the record starts */
};

enum segfile_next {
        SEGFILE_RECORD, /* *rec is an intact record; *off is past it */
        SEGFILE_MORE,   /* buf ends inside a record (or a header) at *off */
        SEGFILE_END,    /* nothing left after *off */
};

/* The next intact record in buf[*off, len). Damaged bytes are passed over
 * to the next record that checks out (magic, a sane length, the CRC) and
 * added to *skipped. Without eof, SEGFILE_MORE leaves *off at the start
 * of an incomplete record: read more and call again. With eof (buf ends
 * where the file does), an incomplete record is damage too (a torn tail,
 * or a false magic inside damaged bytes with real records after it):
 * it is passed over like any other. */
enum segfile_next segfile_next(const char *buf, size_t len, bool eof, size_t *off,
                               struct segfile_rec *rec, uint64_t *skipped);

#endif
