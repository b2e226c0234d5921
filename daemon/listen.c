/* listen.c - creates or adopts the daemon's Unix sockets.
 *
 * Before binding we try to connect to the path: success means another
 * segopsd (or anything) is serving there, and we refuse to steal it;
 * ECONNREFUSED means a stale file left by a crash, which we unlink. The
 * umask is tightened around bind() so the socket never exists with
 * looser permissions than socket_mode, then chmod sets them exactly.
 */
#include "listen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

static int fill_addr(struct sockaddr_un *sa, const char *path)
{
        memset(sa, 0, sizeof(*sa));
        sa->sun_family = AF_UNIX;
        if (strlen(path) >= sizeof(sa->sun_path))
                return -ENAMETOOLONG;
        memcpy(sa->sun_path, path, strlen(path) + 1);
        return 0;
}

static int from_systemd(const char *path, int type)
{
        int n = sd_listen_fds(0);

        for (int fd = SD_LISTEN_FDS_START; n > 0 && fd < SD_LISTEN_FDS_START + n; fd++) {
                if (sd_is_socket_unix(fd, type, -1, path, 0) > 0) {
                        int fl = fcntl(fd, F_GETFL);
                        if (fl >= 0)
                                fcntl(fd, F_SETFL, fl | O_NONBLOCK);
                        fcntl(fd, F_SETFD, FD_CLOEXEC);
                        return fd;
                }
        }
        return -ENOENT;
}

/* 0: nobody serves path (a stale file was removed); -EADDRINUSE: alive. */
static int clear_stale(const struct sockaddr_un *sa, int type)
{
        struct stat st;
        int fd, r;

        if (lstat(sa->sun_path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;
        fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
        close(fd);
        if (r == 0)
                return -EADDRINUSE;
        if (errno != ECONNREFUSED && errno != ENOENT)
                return -errno;
        if (unlink(sa->sun_path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

int listen_unix(const char *path, int type, mode_t mode, bool *ret_adopted, char *err,
                size_t errlen)
{
        struct sockaddr_un sa;
        mode_t old;
        int fd, r;

        fd = from_systemd(path, type);
        *ret_adopted = fd >= 0;
        if (fd >= 0)
                return fd;
        r = fill_addr(&sa, path);
        if (r < 0) {
                snprintf(err, errlen, "%s: socket path too long", path);
                return r;
        }
        r = clear_stale(&sa, type);
        if (r == -EADDRINUSE) {
                snprintf(err, errlen,
                         "%s: another process (a running segopsd?) is already "
                         "listening on this socket; stop it or choose another path",
                         path);
                return r;
        }
        if (r == -EEXIST) {
                snprintf(err, errlen, "%s: exists and is not a socket; not replacing it", path);
                return r;
        }
        if (r < 0) {
                snprintf(err, errlen, "%s: %s", path, strerror(-r));
                return r;
        }
        fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                r = -errno;
                snprintf(err, errlen, "socket(): %s", strerror(errno));
                return r;
        }
        old = umask(0777 & ~mode);
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        if (r < 0 || chmod(path, mode) < 0 || (type == SOCK_STREAM && listen(fd, SOMAXCONN) < 0)) {
                r = -errno;
                snprintf(err, errlen, "%s: %s", path, strerror(errno));
                close(fd);
                return r;
        }
        return fd;
}
