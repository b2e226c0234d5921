/* config-file.c - reading the INI file into a struct cfg (cfg_load).
 *
 * This file turns the operator's INI file (SPEC section 6) into a
 * struct cfg and refuses anything it does not understand: an unknown
 * section or key, a key given twice, a line too long for the parser, a
 * file that is not a regular file or is far too big; config-value.c
 * refuses bad values. A silent default would let a typo run in
 * production for months, so every such problem is an error of the form
 * "FILE:LINE: [section] key: what is wrong (got 'VALUE')", never showing
 * the API key nor anything that looks like one, because error text ends
 * up in the journal. Parsing is done by inih through our own line
 * reader, which counts lines (Debian's inih passes no line number to the
 * handler), checks section headers (inih only reports keys) and rejects
 * over-long lines (inih would silently split them). cfg_load works on a
 * copy, so a failed reload leaves the running configuration untouched.
 */
#include "config-internal.h"

#include <assert.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A config file is a few kilobytes; anything near this is a mistake
 * (wrong path, a log file) and is refused rather than parsed. */
#define CFG_MAX_FILE_BYTES (1024 * 1024)

/* The state of one cfg_load, shared by inih's reader and handler. */
struct cfg_parse {
        struct cfg *c;
        FILE *f;
        unsigned lineno; /* line the reader handed to inih last */
        size_t bytes;
        bool indented; /* that line starts with white space */
        bool failed;   /* msg holds the first error */
        bool stop;     /* reader returns EOF from now on */
        int error;     /* negative errno for the first error */
        unsigned errline;
        char msg[512];
};

/* A section or key name the parser did not know, for an error message:
 * bounded, printable, and never an API key pasted where a name goes. */
static void shown_name(const char *name, size_t n, char *out, size_t outlen)
{
        if (cfg_looks_like_key(name, n))
                snprintf(out, outlen, "(not shown: it looks like an API key)");
        else
                cfg_printable(name, n, out, outlen);
}

/* Record the first error (error is a negative errno) at the current line. */
__attribute__((format(printf, 3, 4))) static void parse_fail(struct cfg_parse *st, int error,
                                                             const char *fmt, ...)
{
        va_list ap;

        if (st->failed)
                return;
        st->failed = true;
        st->error = error;
        st->errline = st->lineno;
        va_start(ap, fmt);
        vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
        va_end(ap);
}

/* An indented line reaches the handler whole, as the value of the key
 * before it: "api_key = sk_..." indented by mistake must not be shown
 * (found by fuzz-config). True when its value part looks like a key or
 * its name part is api_key. */
static bool continuation_holds_key(const char *line)
{
        size_t name = strcspn(line, "=:"), n = name;
        const char *after = line + name;

        if (!*after)
                return false;
        after += 1 + strspn(after + 1, " \t");
        while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
                n--;
        return cfg_looks_like_key(after, strlen(after)) ||
               (n == strlen("api_key") && !memcmp(line, "api_key", n));
}

/* inih's handler: one call per "key = value" (and per continuation line,
 * which is how an indented line after a key looks to inih). Returns 1 to
 * go on, 0 on error; the first error's message is what cfg_load reports. */
static int on_key_value(void *user, const char *section, const char *name, const char *value)
{
        struct cfg_parse *st = user;
        char shown[CFG_SHOW_MAX + 8], msg[sizeof(st->msg)];
        unsigned *line;
        int i, r;

        /* Builds with INI_CALL_HANDLER_ON_NEW_SECTION pass NULLs here. */
        if (!name || !value)
                return 1;
        if (st->failed)
                return 0;
        if (!*section) {
                shown_name(name, strlen(name), shown, sizeof(shown));
                parse_fail(st, -EINVAL, "key '%s' is outside any section", shown);
                return 0;
        }
        if (!cfg_known_section(section, strlen(section))) {
                shown_name(section, strlen(section), shown, sizeof(shown));
                parse_fail(st, -EINVAL, "unknown section [%s]", shown);
                return 0;
        }
        i = cfg_key_find(section, name);
        if (i < 0) {
                shown_name(name, strlen(name), shown, sizeof(shown));
                parse_fail(st, -EINVAL, "[%s] unknown key '%s'", section, shown);
                return 0;
        }
        line = &st->c->key_line[i];
        if (*line) {
                if (st->indented && continuation_holds_key(value))
                        snprintf(msg, sizeof(msg),
                                 "[%s] %s: an indented line continues the value from line %u; "
                                 "remove the indentation (value not shown: it looks like an "
                                 "API key)",
                                 section, name, *line);
                else if (st->indented)
                        cfg_key_error(msg, sizeof(msg), &cfg_keys[i], value,
                                      "an indented line continues the value from line %u; "
                                      "remove the indentation",
                                      *line);
                else
                        cfg_key_error(msg, sizeof(msg), &cfg_keys[i], value,
                                      "set more than once (first on line %u)", *line);
                parse_fail(st, -EINVAL, "%s", msg);
                return 0;
        }
        *line = st->lineno;
        r = cfg_set_value(st->c, &cfg_keys[i], value, msg, sizeof(msg));
        if (r < 0) {
                parse_fail(st, r, "%s", msg);
                return 0;
        }
        return 1;
}

/* inih's line reader: fgets plus what inih does not do for us -- line
 * numbers, section header checks, refusing long lines and huge files. */
static char *read_line(char *buf, int num, void *stream)
{
        struct cfg_parse *st = stream;
        const char *p, *q;
        size_t len;

        assert(num >= 4);
        if (st->stop || !fgets(buf, num, st->f))
                return NULL;
        st->lineno++;
        len = strlen(buf);
        st->bytes += len;
        if (st->bytes > CFG_MAX_FILE_BYTES) {
                parse_fail(st, -EINVAL, "file is larger than %d bytes", CFG_MAX_FILE_BYTES);
                st->stop = true;
                return NULL;
        }
        if (len == 0 || (buf[len - 1] != '\n' && !feof(st->f))) {
                int ch;

                parse_fail(st, -EINVAL,
                           "line is longer than %d characters or "
                           "contains a NUL byte",
                           num - 3);
                /* Skip the rest of the line; the file size cap bounds
                 * this loop. */
                while ((ch = getc(st->f)) != EOF && ch != '\n')
                        if (++st->bytes > CFG_MAX_FILE_BYTES) {
                                st->stop = true;
                                return NULL;
                        }
                buf[0] = '\n';
                buf[1] = '\0';
                return buf;
        }
        st->indented = buf[0] == ' ' || buf[0] == '\t';
        /* inih only tells us about keys, so an unknown section with no
         * keys (or a misspelt one) is checked here, on its own line. */
        p = buf + strspn(buf, " \t");
        if (*p == '[') {
                q = strchr(p, ']');
                if (q && !cfg_known_section(p + 1, (size_t)(q - p - 1))) {
                        char shown[CFG_SHOW_MAX + 8];

                        shown_name(p + 1, (size_t)(q - p - 1), shown, sizeof(shown));
                        parse_fail(st, -EINVAL, "unknown section [%s]", shown);
                }
        }
        return buf;
}

/* Open path for reading, refusing what is not a regular file. 0 with
 * *ret_f set, or a negative errno with err filled. */
static int open_file(const char *path, FILE **ret_f, char *err, size_t errlen)
{
        struct stat sb;
        FILE *f;
        int r;

        f = fopen(path, "re");
        if (!f) {
                r = -errno;
                cfg_errf(err, errlen, "%s: cannot open: %s", path, strerror(-r));
                return r;
        }
        if (fstat(fileno(f), &sb) < 0) {
                r = -errno;
                cfg_errf(err, errlen, "%s: cannot stat: %s", path, strerror(-r));
                fclose(f);
                return r;
        }
        /* fopen succeeds on a directory and fgets then just fails: that
         * would read as an empty, valid file. */
        if (!S_ISREG(sb.st_mode)) {
                cfg_errf(err, errlen, "%s: not a regular file", path);
                fclose(f);
                return -EINVAL;
        }
        *ret_f = f;
        return 0;
}

/* Run inih over st->f into st->c. 0, or a negative errno with err
 * naming path and, for what is wrong in the file, the line. */
static int parse_file(struct cfg_parse *st, const char *path, char *err, size_t errlen)
{
        int r = ini_parse_stream(read_line, st, on_key_value, st);

        if (ferror(st->f)) {
                cfg_errf(err, errlen, "%s: read error", path);
                return -EIO;
        }
        /* inih's own syntax errors (r = first bad line) and ours (in st)
         * are separate: report whichever came first. */
        if (st->failed && (r <= 0 || (unsigned)r >= st->errline)) {
                cfg_errf(err, errlen, "%s:%u: %s", path, st->errline, st->msg);
                return st->error;
        }
        if (r == -2) {
                cfg_errf(err, errlen, "%s: out of memory", path);
                return -ENOMEM;
        }
        if (r != 0) {
                cfg_errf(err, errlen,
                         "%s:%d: syntax error: expected '[section]', 'key = value' or a comment",
                         path, r);
                return -EINVAL;
        }
        return 0;
}

int cfg_load(struct cfg *c, const char *path, char *err, size_t errlen)
{
        struct cfg_parse *st = NULL;
        struct cfg n;
        int r;

        if (!c || !path) {
                cfg_errf(err, errlen, "cfg_load: no config or path");
                return -EINVAL;
        }
        r = cfg_copy(&n, c);
        if (r < 0) {
                cfg_errf(err, errlen, "%s: out of memory", path);
                return r;
        }
        /* Lines are this file's: none of its keys is seen yet. */
        memset(n.key_line, 0, sizeof(n.key_line));
        st = calloc(1, sizeof(*st));
        if (!st) {
                r = -ENOMEM;
                cfg_errf(err, errlen, "%s: out of memory", path);
                goto out;
        }
        st->c = &n;
        r = open_file(path, &st->f, err, errlen);
        if (r == 0)
                r = parse_file(st, path, err, errlen);
        if (r < 0)
                goto out;
        cfg_free_str(&n.path);
        n.path = strdup(path);
        if (!n.path) {
                r = -ENOMEM;
                cfg_errf(err, errlen, "%s: out of memory", path);
                goto out;
        }
        cfg_free(c);
        *c = n;
        memset(&n, 0, sizeof(n));
        r = 0;
out:
        cfg_free(&n);
        if (st && st->f)
                fclose(st->f);
        free(st);
        return r;
}
