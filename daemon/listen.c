/* listen.c - creates or adopts the daemon's Unix sockets.
 *
 * Before binding we try to connect to the path: success means another
 * segopsd (or anything) is serving there, and we refuse to steal it;
 * ECONNREFUSED means a stale file left by a crash, which we unlink.
 *
 * Permissions are never set by path: a process that can write to the
 * socket's directory could swap the fresh socket for a symlink between
 * bind() and a chmod(path), and chmod would follow it to any file. On
 * Linux the file bind() creates takes its mode from the socket's own
 * inode (fchmod on the fd, before bind; less the umask), so the socket
 * appears with at most socket_mode; with socket_group, with the owner's
 * bits only, as its group is still ours. Then the path is opened with
 * O_PATH|O_NOFOLLOW, checked to be a socket of our own uid, and the
 * group and exact mode are set through that descriptor. The umask is
 * left alone: it is process-wide, and other threads (the spool's, curl's)
 * are running by now.
 */
#include "listen.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "config.h"

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

/* Set group (unless CFG_GROUP_OWN) and mode on the socket file at path
 * through an O_PATH descriptor, after checking that it is still a socket
 * of ours (not a symlink, nor anyone else's file). */
static int set_perms(const char *path, mode_t mode, gid_t gid, char *err, size_t errlen)
{
        char proc[64];
        struct stat st;
        int fd, r = 0;

        fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                snprintf(err, errlen, "%s: %s", path, strerror(errno));
                return r;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                snprintf(err, errlen, "%s: %s", path, strerror(errno));
        } else if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid()) {
                r = -EEXIST;
                snprintf(err, errlen,
                         "%s: replaced by another file right after it was created; is its "
                         "directory writable by another user?",
                         path);
        } else if (gid != CFG_GROUP_OWN && st.st_gid != gid &&
                   fchownat(fd, "", (uid_t)-1, gid, AT_EMPTY_PATH) < 0) {
                r = -errno;
                snprintf(err, errlen, "%s: cannot give it socket_group %u: %s", path, (unsigned)gid,
                         strerror(errno));
        } else if ((st.st_mode & 07777) != mode) {
                /* chmod of the descriptor's /proc link reaches the inode
                 * it holds, whatever is at path now (fchmod refuses
                 * O_PATH descriptors). */
                snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
                if (chmod(proc, mode) < 0) {
                        r = -errno;
                        snprintf(err, errlen, "%s: cannot set socket_mode %04o: %s", path,
                                 (unsigned)mode, strerror(errno));
                }
        }
        close(fd);
        return r;
}

int listen_unix(const char *path, int type, mode_t mode, gid_t gid, bool *ret_adopted, char *err,
                size_t errlen)
{
        struct sockaddr_un sa;
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
        /* Until it has the right group, the group gets nothing. */
        if (fchmod(fd, gid == CFG_GROUP_OWN ? mode : mode & 0700) < 0 ||
            bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                r = -errno;
                snprintf(err, errlen, "%s: %s", path, strerror(errno));
                close(fd);
                return r;
        }
        r = set_perms(path, mode, gid, err, errlen);
        if (r == 0 && type == SOCK_STREAM && listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                snprintf(err, errlen, "%s: %s", path, strerror(errno));
        }
        if (r < 0) {
                close(fd);
                return r;
        }
        return fd;
}

/* What fd is, for the error that names it: "a stream socket at
 * '/run/x.sock'", "a datagram socket (no path)", "not a Unix socket". */
static void describe_fd(int fd, char *out, size_t outlen)
{
        struct sockaddr_un sa;
        socklen_t len = sizeof(sa);
        int type = 0;
        socklen_t tlen = sizeof(type);

        memset(&sa, 0, sizeof(sa));
        if (sd_is_socket(fd, AF_UNIX, 0, -1) <= 0 ||
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
                snprintf(out, outlen, "fd %d, not a Unix socket", fd);
                return;
        }
        if (len > offsetof(struct sockaddr_un, sun_path) && sa.sun_path[0] != '\0')
                snprintf(out, outlen, "a %s socket at '%.*s'",
                         type == SOCK_DGRAM    ? "datagram"
                         : type == SOCK_STREAM ? "stream"
                                               : "other",
                         (int)(len - offsetof(struct sockaddr_un, sun_path)), sa.sun_path);
        else
                snprintf(out, outlen, "a %s socket with no path (fd %d)",
                         type == SOCK_DGRAM    ? "datagram"
                         : type == SOCK_STREAM ? "stream"
                                               : "other",
                         fd);
}

int listen_check_passed(const char *events_path, const char *control_path, char *err, size_t errlen)
{
        int n = sd_listen_fds(0);

        for (int fd = SD_LISTEN_FDS_START; n > 0 && fd < SD_LISTEN_FDS_START + n; fd++) {
                char what[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];

                if (sd_is_socket_unix(fd, SOCK_DGRAM, -1, events_path, 0) > 0 ||
                    sd_is_socket_unix(fd, SOCK_STREAM, -1, control_path, 0) > 0)
                        continue;
                describe_fd(fd, what, sizeof(what));
                snprintf(err, errlen,
                         "systemd passed %s, which matches neither [listen] events_socket "
                         "('%s', ListenDatagram=) nor [listen] control_socket ('%s', "
                         "ListenStream=): its clients would never be answered; make the "
                         "socket unit and the config name the same paths",
                         what, events_path, control_path);
                return -EADDRNOTAVAIL;
        }
        return 0;
}
