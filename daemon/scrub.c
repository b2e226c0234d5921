/* scrub.c - finds secrets and secret-shaped runs in text from the
 * upstream and copies the text with each replaced by SCRUB_MARK.
 *
 * Three views of the input are searched: the bytes as they are, and the
 * characters after one and after two levels of escapes are undone (each
 * character with the offset of its first byte, so a match in any view
 * marks the bytes it came from). In each, every secret is looked for
 * with KMP, which also gives the head of a secret the input ends in,
 * and so are the shapes (sk_/pk_ words, the credential after "Bearer"). What
 * is marked is then copied out with one mark per marked run. Nothing
 * here logs: the callers (batcher-answer.c, session.c) do.
 */
#include "scrub.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define MARK_LEN (sizeof(SCRUB_MARK) - 1)

/* The input as matching sees it: dn characters, c[k] coming from the
 * bytes at[k] .. at[k + 1]; at[dn] is the input's length. at == NULL:
 * the bytes themselves (at[k] = k). */
struct view {
        const unsigned char *c;
        size_t *at;
        size_t dn;
        unsigned char *own; /* c, when the view made it */
};

static size_t at(const struct view *v, size_t k)
{
        return v->at ? v->at[k] : k;
}

static int hexval(char ch)
{
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

/* The value of the digits hex digits at s[i], if they are all there. */
static bool hex_at(const char *s, size_t n, size_t i, size_t digits, unsigned *v)
{
        unsigned x = 0;

        if (i + digits > n)
                return false;
        for (size_t k = 0; k < digits; k++) {
                int h = hexval(s[i + k]);

                if (h < 0)
                        return false;
                x = x << 4 | (unsigned)h;
        }
        *v = x;
        return true;
}

/* The character at s[i] (i < n) with one escape undone -- \uXXXX,
 * \xHH, %HH, \/ \\ \" \' -- in *c; returns the bytes it took. A \u
 * above 0xff becomes 0, which no secret or shape holds. */
static size_t decode_one(const char *s, size_t n, size_t i, unsigned char *c)
{
        unsigned v;

        if (s[i] == '\\' && i + 1 < n) {
                char e = s[i + 1];

                if (e == 'u' && hex_at(s, n, i + 2, 4, &v)) {
                        *c = v > 0xff ? 0 : (unsigned char)v;
                        return 6;
                }
                if (e == 'x' && hex_at(s, n, i + 2, 2, &v)) {
                        *c = (unsigned char)v;
                        return 4;
                }
                if (e == '/' || e == '\\' || e == '"' || e == '\'') {
                        *c = (unsigned char)e;
                        return 2;
                }
        } else if (s[i] == '%' && hex_at(s, n, i + 1, 2, &v)) {
                *c = (unsigned char)v;
                return 3;
        }
        *c = (unsigned char)s[i];
        return 1;
}

/* Whether s[i..n) is an escape the input was cut in ("\u00", "\x",
 * "%4", a lone "\"): the decoded view ends before it, so that a secret
 * cut there is still the head of a secret at the view's end. */
static bool cut_escape(const char *s, size_t n, size_t i)
{
        size_t want, from;

        if (s[i] == '%') {
                want = 3;
                from = i + 1;
        } else if (s[i] == '\\' && i + 1 == n) {
                return true;
        } else if (s[i] == '\\' && (s[i + 1] == 'u' || s[i + 1] == 'x')) {
                want = s[i + 1] == 'u' ? 6 : 4;
                from = i + 2;
        } else {
                return false;
        }
        if (n - i >= want)
                return false;
        for (size_t j = from; j < n; j++)
                if (hexval(s[j]) < 0)
                        return false;
        return true;
}

/* The view of in with one level of escapes undone; 0 or -ENOMEM. */
static int decode(struct view *v, const struct view *in)
{
        const char *s = (const char *)in->c;
        size_t n = in->dn, i = 0, k = 0;
        unsigned char *c = malloc(n ? n : 1);
        size_t *offs = malloc((n + 1) * sizeof(*offs));

        if (!c || !offs) {
                free(c);
                free(offs);
                return -ENOMEM;
        }
        while (i < n && !cut_escape(s, n, i)) {
                offs[k] = at(in, i);
                i += decode_one(s, n, i, &c[k]);
                k++;
        }
        offs[k] = at(in, n); /* the end, past a cut escape too */
        v->c = v->own = c;
        v->at = offs;
        v->dn = k;
        return 0;
}

static void mark(unsigned char *red, size_t from, size_t to)
{
        if (to > from)
                memset(red + from, 1, to - from);
}

/* Mark every place view v holds the secret p (m > 0 bytes), overlapping
 * ones too, and the head of p (SCRUB_TAIL_MIN characters or more) that
 * v ends in. fail: room for m entries. Linear in dn + m. */
static void find_secret(const struct view *v, const unsigned char *p, size_t m, size_t *fail,
                        unsigned char *red)
{
        size_t q = 0;

        fail[0] = 0;
        for (size_t i = 1, k = 0; i < m; i++) {
                while (k > 0 && p[i] != p[k])
                        k = fail[k - 1];
                if (p[i] == p[k])
                        k++;
                fail[i] = k;
        }
        for (size_t i = 0; i < v->dn; i++) {
                while (q > 0 && v->c[i] != p[q])
                        q = fail[q - 1];
                if (v->c[i] == p[q])
                        q++;
                if (q == m) {
                        mark(red, at(v, i + 1 - m), at(v, i + 1));
                        q = fail[m - 1];
                }
        }
        if (q >= SCRUB_TAIL_MIN)
                mark(red, at(v, v->dn - q), at(v, v->dn));
}

static bool is_word(unsigned char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '_';
}

/* A character a key, a token or a credential run goes on through. */
static bool in_run(unsigned char c)
{
        return c > 0x20 && c < 0x7f && !strchr("\"'\\,;<>()[]{}`", c);
}

static bool is_bearer(const unsigned char *c)
{
        static const char word[] = "bearer";

        for (size_t i = 0; i < sizeof(word) - 1; i++)
                if ((c[i] | 0x20) != (unsigned char)word[i])
                        return false;
        return true;
}

/* The end of the run of in_run() characters from k. */
static size_t run_end(const struct view *v, size_t k)
{
        while (k < v->dn && in_run(v->c[k]))
                k++;
        return k;
}

/* Mark sk_/pk_ words and the credential after "Bearer" (scrub.h). */
static void find_shapes(const struct view *v, unsigned char *red)
{
        const unsigned char *c = v->c;
        size_t dn = v->dn, k = 0, j, m;

        while (k < dn) {
                if (k > 0 && is_word(c[k - 1])) {
                        k++;
                        continue;
                }
                if (dn - k >= 3 && (c[k] == 's' || c[k] == 'p') && c[k + 1] == 'k' &&
                    c[k + 2] == '_') {
                        j = run_end(v, k + 3);
                        /* Shorter than a key is a word ("pk_id"), unless
                         * the input was cut in it. */
                        if (j - k >= SCRUB_SHAPE_MIN || (j == dn && j > k + 3)) {
                                mark(red, at(v, k), at(v, j));
                                k = j;
                                continue;
                        }
                } else if (dn - k >= 6 && is_bearer(c + k)) {
                        for (m = k + 6; m < dn && (c[m] == ' ' || c[m] == '\t'); m++)
                                ;
                        j = run_end(v, m);
                        if (m > k + 6 && j > m) {
                                mark(red, at(v, m), at(v, j));
                                k = j;
                                continue;
                        }
                }
                k++;
        }
}

/* Copy s with each marked run as one SCRUB_MARK, as much as fits. */
static size_t emit(char *out, size_t outsz, const char *s, size_t n, const unsigned char *red)
{
        size_t o = 0, i = 0;

        while (i < n) {
                if (red[i]) {
                        if (o + MARK_LEN + 1 > outsz)
                                break;
                        memcpy(out + o, SCRUB_MARK, MARK_LEN);
                        o += MARK_LEN;
                        while (i < n && red[i])
                                i++;
                        continue;
                }
                if (o + 2 > outsz)
                        break;
                out[o++] = s[i++];
        }
        out[o] = '\0';
        return o;
}

size_t scrub_text(char *out, size_t outsz, const char *s, size_t n, const char *const *secrets,
                  size_t nsecrets)
{
        /* The bytes, and the text with one and with two levels of
         * escapes undone (JSON quoted inside JSON). */
        struct view v[1 + SCRUB_UNESCAPE] = { { (const unsigned char *)s, NULL, n, NULL } };
        unsigned char *red = NULL;
        size_t *fail = NULL, longest = 1, len, nv;

        if (outsz == 0)
                return 0;
        for (size_t i = 0; i < nsecrets; i++)
                if (secrets[i] && strlen(secrets[i]) > longest)
                        longest = strlen(secrets[i]);
        red = calloc(n ? n : 1, 1);
        fail = malloc(longest * sizeof(*fail));
        for (nv = 1; red && fail && nv < 1 + SCRUB_UNESCAPE; nv++)
                if (decode(&v[nv], &v[nv - 1]) < 0)
                        break;
        if (!red || !fail || nv < 1 + SCRUB_UNESCAPE) {
                /* Fail closed: nothing of s without its secrets found. */
                len = proto_printable(out, outsz, SCRUB_MARK, MARK_LEN, 0);
                goto out;
        }
        for (size_t k = 0; k < nv; k++) {
                for (size_t i = 0; i < nsecrets; i++) {
                        const unsigned char *p = (const unsigned char *)secrets[i];
                        size_t m = p ? strlen(secrets[i]) : 0;

                        if (m > 0)
                                find_secret(&v[k], p, m, fail, red);
                }
                find_shapes(&v[k], red);
        }
        len = emit(out, outsz, s, n, red);
out:
        for (size_t k = 0; k < 1 + SCRUB_UNESCAPE; k++) {
                free(v[k].own);
                free(v[k].at);
        }
        free(fail);
        free(red);
        return len;
}
