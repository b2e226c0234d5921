/* urlshow.h - an upstream URL as it may be shown in a log line or in
 * stats: without credentials. */
#ifndef SEGOPSD_URLSHOW_H
#define SEGOPSD_URLSHOW_H

#include <stddef.h>

/* The authority of url ("[userinfo@]host[:port]"): what follows
 * "scheme://" up to the first '/', '?' or '#' (where curl ends it), in
 * *ret_len bytes. NULL (and *ret_len 0) when url has no "://". */
const char *urlshow_authority(const char *url, size_t *ret_len);

/* url without its userinfo ("user:password@"), query and fragment:
 * "https://u:p@host:8443/base?k=v#f" -> "https://host:8443/base". The
 * userinfo is everything up to the last '@' before any '?' or '#', even
 * past a '/' (a password with an unencoded '/' in it is still hidden; a
 * base URL has no '@' in its path). Text without "://" ("stdout") only
 * loses its query and fragment. Writes a NUL-terminated string to out;
 * returns its length, or -ENOBUFS when it was cut to fit (still
 * terminated), -EINVAL for no url or no room at all. */
int urlshow_strip(const char *url, char *out, size_t outlen);

#endif
