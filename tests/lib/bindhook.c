/* bindhook.c - an LD_PRELOAD module for tests: plays the hostile process
 * that shares the daemon's socket directory, at the one moment that
 * matters, right after bind() created a socket file.
 *
 * For a bind() to a Unix socket path that begins with
 * $SEGOPS_BINDHOOK_DIR, once the real bind() succeeded:
 * - the path's lstat() (octal mode, gid) is appended as a line
 *   "PATH MODE GID" to $SEGOPS_BINDHOOK_LOG, when set: what anyone in
 *   the directory could see first;
 * - when a file PATH.swap exists, it is renamed over PATH (a symlink
 *   prepared by the test): the swap a racing attacker would make
 *   before the daemon sets the permissions.
 * Anything else goes straight to the real bind().
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

int bind(int fd, const struct sockaddr *sa, socklen_t len);

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

static void observe(const char *path)
{
        const char *log = getenv("SEGOPS_BINDHOOK_LOG");
        struct stat st;
        FILE *f;

        if (!log || lstat(path, &st) < 0)
                return;
        f = fopen(log, "ae");
        if (!f)
                return;
        fprintf(f, "%s %o %u\n", path, (unsigned)(st.st_mode & 07777), (unsigned)st.st_gid);
        fclose(f);
}

static void swap(const char *path)
{
        char from[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];

        snprintf(from, sizeof(from), "%s.swap", path);
        (void)rename(from, path);
}

int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
        static bind_fn real;
        const char *dir = getenv("SEGOPS_BINDHOOK_DIR");
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        int r, saved;

        if (!real)
                real = (bind_fn)dlsym(RTLD_NEXT, "bind");
        if (!real) {
                errno = ENOSYS;
                return -1;
        }
        r = real(fd, sa, len);
        if (r < 0 || !dir || !*dir || sa->sa_family != AF_UNIX ||
            strncmp(un->sun_path, dir, strlen(dir)) != 0)
                return r;
        saved = errno;
        observe(un->sun_path);
        swap(un->sun_path);
        errno = saved;
        return r;
}
