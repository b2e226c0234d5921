/* listen.h - the daemon's Unix socket files: socket activation, stale
 * files, a second daemon on the same path, permissions. */
#ifndef SEGOPSD_LISTEN_H
#define SEGOPSD_LISTEN_H

#include <stddef.h>
#include <sys/types.h>

/* A bound (and for SOCK_STREAM, listening) non-blocking CLOEXEC socket
 * at path: taken from systemd when it passed one for that path,
 * otherwise created. A stale socket file is replaced; a live one (some
 * process accepts on it) is an error (-EADDRINUSE) and left alone.
 * Returns the fd, or a negative errno with err filled. */
int listen_unix(const char *path, int type, mode_t mode, char *err, size_t errlen);

#endif
