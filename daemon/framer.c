/* framer.c - splits a byte stream into newline-terminated lines inside
 * one fixed buffer of max_line + FRAMER_READ bytes, discarding (and
 * reporting) lines that would not fit. A CRLF line's \r is not part of
 * its message, so it does not count against max_line. */
#include "framer.h"
#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FRAMER_READ 16384

int framer_init(struct framer *f, size_t max_line)
{
        memset(f, 0, sizeof(*f));
        f->max_line = max_line;
        f->cap = max_line + 2 + FRAMER_READ; /* + "\r\n" */
        f->buf = malloc(f->cap);
        return f->buf ? 0 : -ENOMEM;
}

void framer_free(struct framer *f)
{
        if (!f)
                return;
        free(f->buf);
        f->buf = NULL;
}

void framer_space(struct framer *f, char **ret_ptr, size_t *ret_len)
{
        if (f->start > 0) {
                memmove(f->buf, f->buf + f->start, f->len - f->start);
                f->len -= f->start;
                f->scan -= f->start;
                f->start = 0;
        }
        /* A discarding framer never holds more than one read. */
        if (f->len == f->cap) {
                f->len = f->scan = 0;
                f->discarding = true;
        }
        *ret_ptr = f->buf + f->len;
        *ret_len = f->cap - f->len;
}

void framer_commit(struct framer *f, size_t n)
{
        f->len += n;
}

static bool too_long(const struct framer *f, const char *p, size_t len)
{
        return proto_message_len(p, len) > f->max_line;
}

int framer_next(struct framer *f, struct framer_line *line)
{
        char *nl;

        for (;;) {
                nl = memchr(f->buf + f->scan, '\n', f->len - f->scan);
                if (nl)
                        break;
                f->scan = f->len;
                if (f->len - f->start > f->max_line + 1) { /* + a \r */
                        /* Too long already: forget it, keep looking for its end. */
                        f->discarding = true;
                        f->start = f->scan = f->len = 0;
                }
                return 0;
        }
        line->line_no = ++f->line_no;
        line->len = (size_t)(nl - (f->buf + f->start));
        if (f->discarding || too_long(f, f->buf + f->start, line->len)) {
                line->data = NULL;
                line->oversize = true;
                f->discarding = false;
        } else {
                line->data = f->buf + f->start;
                line->oversize = false;
        }
        f->start = f->scan = (size_t)(nl - f->buf) + 1;
        return 1;
}

int framer_finish(struct framer *f, struct framer_line *line)
{
        if (!f->discarding && f->len == f->start)
                return 0;
        line->line_no = ++f->line_no;
        line->len = f->len - f->start;
        if (f->discarding || too_long(f, f->buf + f->start, line->len)) {
                line->data = NULL;
                line->oversize = true;
        } else {
                line->data = f->buf + f->start;
                line->oversize = false;
        }
        f->discarding = false;
        f->start = f->scan = f->len;
        return 1;
}

size_t framer_pending(const struct framer *f)
{
        return f->len - f->start;
}

int framer_datagram_next(const char *p, size_t n, size_t *pos, struct framer_line *line)
{
        const char *start = p + *pos, *nl;
        size_t left;

        if (*pos >= n)
                return 0;
        left = n - *pos;
        nl = memchr(start, '\n', left);
        line->data = start;
        line->len = nl ? (size_t)(nl - start) : left;
        line->oversize = false;
        line->line_no = *pos == 0 ? 1 : line->line_no + 1;
        *pos += line->len + 1;
        return 1;
}
