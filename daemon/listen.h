/* listen.h - the daemon's Unix socket files: socket activation, stale
 * files, a second daemon on the same path, permissions. */
#ifndef SEGOPSD_LISTEN_H
#define SEGOPSD_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A bound (and for SOCK_STREAM, listening) non-blocking CLOEXEC socket
 * at path: taken from systemd when it passed one for that path (then
 * mode and gid are systemd's business), otherwise created with mode and
 * group gid (CFG_GROUP_OWN: the daemon's), never by following a path. A stale socket file is replaced; a live one (some
 * process accepts on it) is an error (-EADDRINUSE) and left alone.
 * *ret_adopted says whether systemd passed it (then it is systemd's to
 * keep for the next start: never shut it down).
 * Returns the fd, or a negative errno with err filled. */
int listen_unix(const char *path, int type, mode_t mode, gid_t gid, bool *ret_adopted, char *err,
                size_t errlen);

/* Every socket systemd passed (LISTEN_FDS) must be one listen_unix()
 * will adopt: a datagram socket at events_path or a stream socket at
 * control_path. Another would sit unread while its clients' messages
 * pile up. 0, or -EADDRNOTAVAIL with err naming it and the config keys. */
int listen_check_passed(const char *events_path, const char *control_path, char *err,
                        size_t errlen);

#endif
