/* sign.c - libsegops-sign: the user_id_sig computation of SPEC section 4.
 *
 * One function, HMAC-SHA256 through OpenSSL's EVP_MAC interface (the
 * one-shot HMAC() is deprecated in OpenSSL 3), hex-encoded in lowercase.
 * It is a library rather than a segopsctl detail so that backends can
 * sign ids in-process with the exact code the command line uses. Only
 * segops_* symbols are exported (visibility plus libsegops-sign.map).
 */
#include "segops/sign.h"

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#define SEGOPS_EXPORT __attribute__((visibility("default")))

#define MAC_LEN 32 /* SHA-256 output */

SEGOPS_EXPORT int segops_sign_user_id(const void *secret, size_t secret_len, const char *user_id,
                                      char out_hex[65])
{
        static const char hex[] = "0123456789abcdef";
        unsigned char mac[MAC_LEN];
        char buf[SEGOPS_SIGN_HEX_LEN + 1];
        size_t mac_len = 0, id_len;
        int r;

        if (!secret || secret_len == 0 || !user_id || !out_hex)
                return -EINVAL;
        id_len = strlen(user_id);
        if (id_len == 0)
                return -EINVAL;

        if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, secret_len,
                       (const unsigned char *)user_id, id_len, mac, sizeof(mac), &mac_len) ||
            mac_len != MAC_LEN) {
                /* Leave no errors of ours in the caller's OpenSSL queue. */
                ERR_clear_error();
                r = -EIO;
                goto out;
        }
        for (size_t i = 0; i < MAC_LEN; i++) {
                buf[2 * i] = hex[mac[i] >> 4];
                buf[2 * i + 1] = hex[mac[i] & 0x0f];
        }
        buf[SEGOPS_SIGN_HEX_LEN] = '\0';
        /* Only now is out_hex written: it stays untouched on failure. */
        memcpy(out_hex, buf, sizeof(buf));
        r = 0;
out:
        OPENSSL_cleanse(mac, sizeof(mac));
        OPENSSL_cleanse(buf, sizeof(buf));
        return r;
}
