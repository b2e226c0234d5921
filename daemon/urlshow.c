/* urlshow.c - takes the credentials out of an upstream URL before it
 * is shown (log lines, stats, the ready line). One home for it, so the
 * journal and segopsctl show the same string for the same upstream.
 */
#include "urlshow.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

const char *urlshow_authority(const char *url, size_t *ret_len)
{
        const char *a = url ? strstr(url, "://") : NULL;

        *ret_len = 0;
        if (!a)
                return NULL;
        a += 3;
        *ret_len = strcspn(a, "/?#");
        return a;
}

/* Append n bytes of s at *o, as far as they fit (leaving room for the
 * NUL); false when cut. */
static bool put(char *out, size_t outlen, size_t *o, const char *s, size_t n)
{
        size_t room = outlen - 1 - *o;
        bool whole = n <= room;

        if (!whole)
                n = room;
        memcpy(out + *o, s, n);
        *o += n;
        return whole;
}

int urlshow_strip(const char *url, char *out, size_t outlen)
{
        size_t end, alen, o = 0;
        const char *a, *at = NULL;
        bool whole;

        if (!url || !out || !outlen)
                return -EINVAL;
        end = strcspn(url, "?#");
        a = urlshow_authority(url, &alen);
        if (a && (size_t)(a - url) > end)
                a = NULL; /* "://" only inside the query: no authority */
        if (a) {
                for (const char *p = a; p < url + end; p++)
                        if (*p == '@')
                                at = p;
        }
        if (at) {
                whole = put(out, outlen, &o, url, (size_t)(a - url)) &&
                        put(out, outlen, &o, at + 1, (size_t)(url + end - (at + 1)));
        } else {
                whole = put(out, outlen, &o, url, end);
        }
        out[o] = '\0';
        return whole ? (int)o : -ENOBUFS;
}
