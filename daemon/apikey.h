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

#include "config.h"

/* The key a running segopsd holds. */
struct apikey {
        char *secret;      /* sk_... or pk_...; NULL in dry-run mode or when missing */
        bool missing;      /* no key yet (an empty key file or credential): hold events */
        char redacted[32]; /* apikey_redact(secret), for logs */
        uint64_t gen;      /* bumped when a reload replaces the key */
};

/* Find the key of c in the order above. Trailing white space is
 * stripped. The key must start with sk_ or pk_, be 8 to 512 characters
 * long and printable ASCII without spaces; a key file must be a regular
 * file that other users can neither read nor write. Returns 0 with
 * *ret_key malloc'd, or a negative errno with err filled (naming file
 * and line, never the key) and *ret_key untouched. With api_url = stdout
 * a missing key is not an error: *ret_key is NULL. Nor is an empty (or
 * all white space) key file or credential: the key is yet to come (a
 * package installs the file empty); 0 with *ret_key NULL, and the
 * caller holds events until a key is given (apikey.missing). */
int apikey_load(const struct cfg *c, char **ret_key, char *err, size_t errlen);
/* The same, and *ret_credential (may be NULL) says whether the key is
 * the systemd credential (systemd copies it only at start: a reload
 * cannot rotate it); false on failure. */
int apikey_load_from(const struct cfg *c, char **ret_key, bool *ret_credential, char *err,
                     size_t errlen);

/* The warning for apikey.missing: where the key is expected (the
 * credential, or c's api_key_file) and how to give it. */
void apikey_missing_hint(const struct cfg *c, bool credential, char *out, size_t outlen);

/* "sk_…abcd": the prefix and last 4 characters, for logs; "sk_…" for a
 * key shorter than 12 characters, "…" for one of neither kind, "(none)"
 * for NULL. Truncated to outlen; out may be NULL when outlen is 0. */
void apikey_redact(const char *key, char *out, size_t outlen);

#endif
