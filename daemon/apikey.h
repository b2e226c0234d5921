/* apikey.h - segopsd's API key: found, checked, and shown only redacted.
 *
 * SPEC section 6: the key comes from the systemd credential
 * $CREDENTIALS_DIRECTORY/api_key, else from [upstream] api_key_file,
 * else from the inline [upstream] api_key. It never appears in logs,
 * stats, argv or error text; at most its sk_/pk_ prefix and last 4
 * characters (apikey_redact).
 */
#ifndef SEGOPSD_APIKEY_H
#define SEGOPSD_APIKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

/* The key a running segopsd holds. */
struct apikey {
        char *secret;      /* sk_... or pk_...; NULL in dry-run mode or when missing */
        bool missing;      /* no key yet (an empty key file or credential): hold events */
        char redacted[32]; /* apikey_redact(secret), for logs */
        uint64_t gen;      /* bumped when a reload replaces the key */
};

/* The group the packaged units give the sockets (SocketGroup=, made by
 * systemd/segops.sysusers): the event senders'. */
#define APIKEY_SENDERS_GROUP "segops"

/* Who besides its owner may read or write a key file. */
enum apikey_access {
        APIKEY_OWNER_ONLY, /* nobody: fine */
        APIKEY_GROUP,      /* a group that does not send events: allowed, warned about */
        APIKEY_SENDERS,    /* a group of the event senders: refused */
        APIKEY_EVERYONE,   /* every user: refused */
};

/* The policy, as a pure function: what a file of this mode and group
 * is, given the senders' groups senders[0..n). */
enum apikey_access apikey_access(mode_t mode, gid_t gid, const gid_t *senders, size_t n);

/* The groups whose members may send events, from which a key file is
 * kept: the sockets' group ([listen] socket_group, or this process's
 * own when it is unset) and the group named segops when there is one
 * (the unit's SocketGroup: sockets passed by systemd keep it). Fills
 * out and returns how many (1 or 2). */
size_t apikey_senders(const struct cfg *c, gid_t out[2]);

/* Find the key of c in the order above. Trailing white space is
 * stripped. The key must start with sk_ or pk_, be 8 to 512 characters
 * long and printable ASCII without spaces; a key file must be a regular
 * file that neither other users nor the senders' groups (apikey_senders)
 * can read or write. Returns 0 with *ret_key malloc'd, or a negative
 * errno with err filled (naming file and line, never the key) and
 * *ret_key untouched. With api_url = stdout a missing key is not an
 * error: *ret_key is NULL. Nor is an empty (or all white space) key
 * file or credential: the key is yet to come (a package installs the
 * file empty); 0 with *ret_key NULL, and the caller holds events until
 * a key is given (apikey.missing). */
int apikey_load(const struct cfg *c, char **ret_key, char *err, size_t errlen);
/* The same, and *ret_credential (may be NULL) says whether the key is
 * the systemd credential (systemd copies it only at start: a reload
 * cannot rotate it); false on failure. */
int apikey_load_from(const struct cfg *c, char **ret_key, bool *ret_credential, char *err,
                     size_t errlen);

/* The warning for apikey.missing: where the key is expected (the
 * credential, or c's api_key_file) and how to give it. */
void apikey_missing_hint(const struct cfg *c, bool credential, char *out, size_t outlen);
/* For the log, after the key was loaded from c's api_key_file (not the
 * credential): 1 with msg filled when a group other than the senders'
 * may read or write the file, else 0. */
int apikey_file_warning(const struct cfg *c, char *msg, size_t msglen);

/* "sk_…abcd": the prefix and last 4 characters, for logs; "sk_…" for a
 * key shorter than 12 characters, "…" for one of neither kind, "(none)"
 * for NULL. Truncated to outlen; out may be NULL when outlen is 0. */
void apikey_redact(const char *key, char *out, size_t outlen);

#endif
