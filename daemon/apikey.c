/* apikey.c - the API key of SPEC section 6: where it is read from, what
 * a key must look like, and the one form it may be shown in.
 *
 * The lookup order is the systemd credential ($CREDENTIALS_DIRECTORY/
 * api_key), then the file named by api_key_file, then the inline
 * api_key. A credential directory without api_key falls through; a key
 * file that is set but cannot be read does not (a silent fall-through
 * to another key would hide the mistake). A key file that every local
 * user can read is no secret and is refused, as ssh refuses such private
 * keys; so is one that the event senders' group can read or write (the
 * sockets' group, and group segops: apikey_senders), since keeping the
 * key from the senders is what segopsd is for. One that another group
 * can read is allowed, with a warning (apikey_file_warning). The policy
 * is one pure function, apikey_access. The key itself never appears in
 * an error: messages name the
 * file and line of the config, or the credential's path, and show at
 * most the redacted key ("sk_…abcd"). Buffers that held a key are wiped
 * before they are freed.
 */
#include "apikey.h"
#include "config-internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Key files hold one line; the key itself is at most 512 characters. */
#define APIKEY_MAX_FILE_BYTES 4096
#define APIKEY_MIN_LEN 8
#define APIKEY_MAX_LEN 512

#define ELLIPSIS "\xe2\x80\xa6" /* U+2026, UTF-8 */

/* Room for "where" a key came from: a path and some words. The from_*
 * functions below fill a buffer of this size for check_key's messages. */
#define WHERE_MAX (PATH_MAX + 128)

/* What a from_* function returns when its source holds no key. */
#define NOT_HERE 1

/* What a refused key file's message recommends. */
#define APIKEY_HINT                                                                                \
        "make it owner-only: root:root 0600, passed as the systemd credential api_key "            \
        "(LoadCredential=api_key:" CFG_DEFAULT_KEY_PATH " in the unit), or without "               \
        "systemd 0600 owned by the user segopsd runs as"

void apikey_redact(const char *key, char *out, size_t outlen)
{
        const char *prefix = "";
        size_t len;

        if (!out || outlen == 0)
                return;
        if (!key) {
                snprintf(out, outlen, "(none)");
                return;
        }
        len = strlen(key);
        if (cfg_looks_like_key(key, len))
                prefix = key[0] == 's' ? "sk_" : "pk_";
        /* Short keys would give away too large a share of themselves;
         * the tail of a key that is not all printable (an invalid one,
         * about to be named in an error) could hold control bytes. */
        if (len < 12 || !*prefix || cfg_span_visible(key + len - 4) < 4)
                snprintf(out, outlen, "%s" ELLIPSIS, prefix);
        else
                snprintf(out, outlen, "%s" ELLIPSIS "%s", prefix, key + len - 4);
}

enum apikey_access apikey_access(mode_t mode, gid_t gid, const gid_t *senders, size_t n)
{
        size_t i;

        if (mode & (S_IROTH | S_IWOTH))
                return APIKEY_EVERYONE;
        if (!(mode & (S_IRGRP | S_IWGRP)))
                return APIKEY_OWNER_ONLY;
        for (i = 0; i < n; i++)
                if (senders[i] == gid)
                        return APIKEY_SENDERS;
        return APIKEY_GROUP;
}

size_t apikey_senders(const struct cfg *c, gid_t out[2])
{
        gid_t gid;
        size_t n = 0;

        out[n++] = c->socket_group != CFG_GROUP_OWN ? c->socket_group : getegid();
        if (cfg_group_gid(APIKEY_SENDERS_GROUP, &gid) == 0 && gid != out[0])
                out[n++] = gid;
        return n;
}

/* A group's name for a message ("segops"), or its number. */
static const char *group_name(gid_t gid, char *out, size_t outlen)
{
        if (cfg_group_name(gid, out, outlen) < 0)
                snprintf(out, outlen, "%u", (unsigned)gid);
        return out;
}

/* Read a one-line secret file, kept from everyone but its owner and
 * groups other than senders[0..nsenders). Returns 0 with *ret
 * malloc'd, or a negative errno (from open/read; -EISDIR or -EINVAL for what is not a
 * regular file, -EPERM for one every user or a senders' group may read
 * or write, -EFBIG). *ret_sb (may be NULL) receives the file's stat
 * once it is known, for the message. */
static int read_secret(const char *path, const gid_t *senders, size_t nsenders, char **ret,
                       struct stat *ret_sb)
{
        enum apikey_access who;
        char *buf = NULL;
        size_t n = 0;
        struct stat sb;
        int fd, r, i;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &sb) < 0) {
                r = -errno;
                goto out;
        }
        if (ret_sb)
                *ret_sb = sb;
        if (!S_ISREG(sb.st_mode)) {
                r = S_ISDIR(sb.st_mode) ? -EISDIR : -EINVAL;
                goto out;
        }
        who = apikey_access(sb.st_mode, sb.st_gid, senders, nsenders);
        if (who == APIKEY_EVERYONE || who == APIKEY_SENDERS) {
                r = -EPERM;
                goto out;
        }
        buf = malloc(APIKEY_MAX_FILE_BYTES + 1);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        /* Each read returns at least one byte or ends the loop, so the
         * cap bounds it; EINTR retries are bounded too. */
        for (i = 0; i < APIKEY_MAX_FILE_BYTES + 64; i++) {
                ssize_t k = read(fd, buf + n, APIKEY_MAX_FILE_BYTES + 1 - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        r = -errno;
                        goto out;
                }
                if (k == 0)
                        break;
                n += (size_t)k;
                if (n > APIKEY_MAX_FILE_BYTES) {
                        r = -EFBIG;
                        goto out;
                }
        }
        buf[n] = '\0';
        *ret = buf;
        buf = NULL;
        r = 0;
out:
        if (buf) {
                explicit_bzero(buf, APIKEY_MAX_FILE_BYTES + 1);
                free(buf);
        }
        close(fd);
        return r;
}

static bool is_blank(const char *s)
{
        while (*s && isspace((unsigned char)*s))
                s++;
        return !*s;
}

/* Check a key after its trailing white space is stripped (in place).
 * where names its origin; the message shows at most the redacted key. */
static int check_key(char *key, const char *where, char *err, size_t errlen)
{
        char red[32];
        size_t len = strlen(key), i;

        while (len > 0 && isspace((unsigned char)key[len - 1]))
                key[--len] = '\0';
        if (len == 0) {
                cfg_errf(err, errlen, "%s: API key is empty", where);
                return -EINVAL;
        }
        if (!cfg_looks_like_key(key, len)) {
                cfg_errf(err, errlen, "%s: API key must start with sk_ or pk_ (value not shown)",
                         where);
                return -EINVAL;
        }
        apikey_redact(key, red, sizeof(red));
        if (len < APIKEY_MIN_LEN || len > APIKEY_MAX_LEN) {
                cfg_errf(err, errlen, "%s: API key must be %d to %d characters long (got %zu: %s)",
                         where, APIKEY_MIN_LEN, APIKEY_MAX_LEN, len, red);
                return -EINVAL;
        }
        i = cfg_span_visible(key);
        if (i < len) {
                cfg_errf(err, errlen,
                         "%s: API key contains white space or a non-printable "
                         "character at position %zu (%s)",
                         where, i + 1, red);
                return -EINVAL;
        }
        return 0;
}

/* 1: $CREDENTIALS_DIRECTORY/api_key. Returns 0 with *ret_key read,
 * NOT_HERE when there is no credential (no directory, or no api_key in
 * it), or a negative errno with err filled. */
static int from_credential(char **ret_key, char *where, char *err, size_t errlen)
{
        const char *credir = getenv("CREDENTIALS_DIRECTORY");
        char path[PATH_MAX + 16];
        int r;

        if (!credir || !*credir)
                return NOT_HERE;
        if ((size_t)snprintf(path, sizeof(path), "%s/api_key", credir) >= sizeof(path)) {
                cfg_errf(err, errlen, "$CREDENTIALS_DIRECTORY is too long");
                return -ENAMETOOLONG;
        }
        snprintf(where, WHERE_MAX, "credential api_key (%s)", path);
        /* Only the every-user check: systemd gives the service's user
         * read access through an ACL, which shows in the group bits;
         * its source file (LoadCredential=) is read by systemd, as root,
         * and segopsd does not see it. */
        r = read_secret(path, NULL, 0, ret_key, NULL);
        if (r == -ENOENT)
                return NOT_HERE;
        if (r == -EPERM)
                cfg_errf(err, errlen,
                         "%s: can be read or written by every user; keep it to its "
                         "owner (systemd's credentials are 0400)",
                         where);
        else if (r < 0)
                cfg_errf(err, errlen, "%s: cannot read: %s", where, strerror(-r));
        return r;
}

/* api_key_file for a message: a path that is itself a key (pasted into
 * api_key_file) is named by its redacted form. */
static void key_file_name(const struct cfg *c, char *out, size_t outlen)
{
        if (cfg_looks_like_key(c->api_key_file, strlen(c->api_key_file))) {
                char red[32];

                apikey_redact(c->api_key_file, red, sizeof(red));
                snprintf(out, outlen, "%s (a key, not a file name)", red);
        } else
                snprintf(out, outlen, "%s", c->api_key_file);
}

/* 2: the file named by api_key_file. 0 with *ret_key read, or a
 * negative errno with err filled: a key file that is set is never
 * passed over. */
static int from_key_file(const struct cfg *c, char **ret_key, char *where, char *err, size_t errlen)
{
        char name[PATH_MAX + 64], at[PATH_MAX + 16], group[64];
        struct stat sb;
        enum apikey_access who = APIKEY_OWNER_ONLY;
        gid_t senders[2];
        size_t n = apikey_senders(c, senders);
        int r;

        key_file_name(c, name, sizeof(name));
        snprintf(where, WHERE_MAX, "%s (api_key_file)", name);
        memset(&sb, 0, sizeof(sb));
        r = read_secret(c->api_key_file, senders, n, ret_key, &sb);
        if (r == -EPERM)
                who = apikey_access(sb.st_mode, sb.st_gid, senders, n);
        cfg_at(c, cfg_key_line(c, "upstream", "api_key_file"), at, sizeof(at));
        if (r == -EPERM && who == APIKEY_SENDERS)
                cfg_errf(err, errlen,
                         "%s: [upstream] api_key_file: %s can be read or written by group %s, "
                         "whose members may send events (the sockets' group) and must not "
                         "hold the key; " APIKEY_HINT,
                         at, name, group_name(sb.st_gid, group, sizeof(group)));
        else if (r == -EPERM && who == APIKEY_EVERYONE)
                cfg_errf(err, errlen,
                         "%s: [upstream] api_key_file: %s can be read or written by every "
                         "user; " APIKEY_HINT,
                         at, name);
        else if (r < 0)
                cfg_errf(err, errlen, "%s: [upstream] api_key_file: %s: %s", at, name,
                         strerror(-r));
        return r;
}

int apikey_file_warning(const struct cfg *c, char *msg, size_t msglen)
{
        char name[PATH_MAX + 64], at[PATH_MAX + 16], group[64];
        struct stat sb;
        gid_t senders[2];
        size_t n;

        if (!c || !c->api_key_file || stat(c->api_key_file, &sb) < 0)
                return 0;
        n = apikey_senders(c, senders);
        if (apikey_access(sb.st_mode, sb.st_gid, senders, n) != APIKEY_GROUP)
                return 0;
        key_file_name(c, name, sizeof(name));
        cfg_at(c, cfg_key_line(c, "upstream", "api_key_file"), at, sizeof(at));
        cfg_errf(msg, msglen,
                 "%s: [upstream] api_key_file: %s can be read or written by group %s; "
                 "prefer owner-only (chmod 0600)",
                 at, name, group_name(sb.st_gid, group, sizeof(group)));
        return 1;
}

/* 3: the inline api_key. 0 with *ret_key copied, or -ENOMEM. */
static int from_inline(const struct cfg *c, char **ret_key, char *where, char *err, size_t errlen)
{
        char at[PATH_MAX + 16];

        snprintf(where, WHERE_MAX, "%s: [upstream] api_key",
                 cfg_at(c, cfg_key_line(c, "upstream", "api_key"), at, sizeof(at)));
        *ret_key = strdup(c->api_key);
        if (!*ret_key) {
                cfg_errf(err, errlen, "out of memory");
                return -ENOMEM;
        }
        return 0;
}

int apikey_load(const struct cfg *c, char **ret_key, char *err, size_t errlen)
{
        return apikey_load_from(c, ret_key, NULL, err, errlen);
}

int apikey_load_from(const struct cfg *c, char **ret_key, bool *ret_credential, char *err,
                     size_t errlen)
{
        char where[WHERE_MAX];
        bool credential = false;
        char *key = NULL;
        int r;

        if (!c || !ret_key) {
                cfg_errf(err, errlen, "apikey_load: no config");
                return -EINVAL;
        }
        if (ret_credential)
                *ret_credential = false;
        r = from_credential(&key, where, err, errlen);
        if (r == 0)
                credential = true;
        else if (r == NOT_HERE && c->api_key_file)
                r = from_key_file(c, &key, where, err, errlen);
        else if (r == NOT_HERE && c->api_key)
                r = from_inline(c, &key, where, err, errlen);
        if (r < 0)
                return r;
        if (r == NOT_HERE) {
                if (c->api_url && strcmp(c->api_url, "stdout") == 0) {
                        *ret_key = NULL;
                        return 0;
                }
                cfg_errf(err, errlen,
                         "%s: no API key: set [upstream] api_key_file "
                         "or pass the systemd credential api_key",
                         c->path ? c->path : "(config)");
                return -ENOKEY;
        }
        if (is_blank(key)) {
                /* An empty key file or credential: the key is yet to
                 * come (a package installs the file empty). The caller
                 * holds the events until a key is given. */
                explicit_bzero(key, strlen(key));
                free(key);
                if (ret_credential)
                        *ret_credential = credential;
                *ret_key = NULL;
                return 0;
        }
        r = check_key(key, where, err, errlen);
        if (r < 0) {
                explicit_bzero(key, strlen(key));
                free(key);
                return r;
        }
        if (ret_credential)
                *ret_credential = credential;
        *ret_key = key;
        return 0;
}

void apikey_missing_hint(const struct cfg *c, bool credential, char *out, size_t outlen)
{
        if (credential)
                snprintf(out, outlen,
                         "no API key yet: the systemd credential api_key is empty; events are "
                         "accepted and held until it is given: write the key to the "
                         "credential's source file (LoadCredential= in segopsd.service; "
                         "root-owned, mode 0600) and restart segopsd");
        else
                snprintf(out, outlen,
                         "no API key yet: %s (api_key_file) is empty; events are accepted "
                         "and held until it is given: write the key to it (mode 0600) and "
                         "restart segopsd (if segopsd reads this file itself, not as the "
                         "systemd credential, a reload, SIGHUP, takes an sk_ key too)",
                         c->api_key_file ? c->api_key_file : "(not set)");
}
