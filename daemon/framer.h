/* framer.h - NDJSON framing for one stream connection.
 *
 * Bytes go in as they are read (straight into the framer's own buffer,
 * no copy); complete lines come out one at a time, so the caller can
 * pause between lines. The buffer never grows past max_line plus one
 * read's worth: a longer line is discarded up to its newline and
 * reported once, as oversize, with its line number.
 */
#ifndef SEGOPSD_FRAMER_H
#define SEGOPSD_FRAMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct framer {
        char *buf;
        size_t cap;
        size_t start; /* first byte of the current line */
        size_t scan;  /* bytes before this hold no newline */
        size_t len;   /* bytes in buf */
        size_t max_line;
        uint64_t line_no; /* number of the last line returned */
        bool discarding;  /* inside an oversize line */
};

struct framer_line {
        const char *data; /* valid until the next framer call */
        size_t len;       /* without the newline */
        uint64_t line_no; /* 1-based */
        bool oversize;    /* data is NULL, the line was discarded */
};

int framer_init(struct framer *f, size_t max_line); /* 0 or -ENOMEM */
void framer_free(struct framer *f);

/* Where the next read may write, and how much. Always > 0 bytes. */
void framer_space(struct framer *f, char **ret_ptr, size_t *ret_len);
/* n bytes were written at the place framer_space() gave. */
void framer_commit(struct framer *f, size_t n);

/* 1 with *line filled, or 0 when no complete line is buffered. */
int framer_next(struct framer *f, struct framer_line *line);
/* At end of input: 1 with the unterminated last line, or 0. */
int framer_finish(struct framer *f, struct framer_line *line);

/* Bytes buffered but not yet returned as lines. */
size_t framer_pending(const struct framer *f);

/* The messages of one datagram, in place: newline-separated, a last one
 * without a newline included, nothing after a final newline. *pos
 * starts at 0. 1 with *line set (line_no counts from 1 within the
 * datagram), or 0 at the end. */
int framer_datagram_next(const char *p, size_t n, size_t *pos, struct framer_line *line);

#endif
