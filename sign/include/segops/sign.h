/* segops/sign.h - sign user ids for segops pk_ session mints.
 *
 * A backend that hands out identities to segops clients signs each user
 * id with a secret it shares with the segops upstream; the client passes
 * the signature as "user_id_sig" (segopsctl set-user --sig, the
 * set_user op). SPEC section 4 defines the signature as the lowercase
 * hex of HMAC-SHA256(key = signing secret, message = user_id bytes).
 *
 * The secret must stay on the backend: never hand it to segopsd or to a
 * client. Link with `pkg-config --cflags --libs segops-sign`; the manual
 * page is segops_sign_user_id(3).
 *
 * This header is C89 and C++ clean.
 */
#ifndef SEGOPS_SIGN_H
#define SEGOPS_SIGN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Length of a signature in hex characters, without the NUL. */
#define SEGOPS_SIGN_HEX_LEN 64

/* Compute the user_id_sig of user_id.
 *
 * secret, secret_len: the signing secret, raw bytes (may contain NULs);
 *     at least one byte.
 * user_id: NUL-terminated, at least one byte; its bytes are signed as
 *     they are (no normalisation, no trailing newline).
 * out_hex: receives 64 lowercase hex digits and a terminating NUL.
 *
 * Returns 0 on success; -EINVAL when an argument is NULL or the secret
 * or the user id is empty; -EIO when the crypto library fails. On
 * failure out_hex is left untouched. The function keeps no state, is
 * thread-safe and wipes its intermediate MAC from memory; wiping the
 * secret is the caller's business. */
int segops_sign_user_id(const void *secret, size_t secret_len, const char *user_id,
                        char out_hex[65]);

#ifdef __cplusplus
}
#endif

#endif
