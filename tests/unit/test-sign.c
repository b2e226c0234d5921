/* test-sign.c - unit tests for sign/sign.c (suite "sign").
 *
 * The published HMAC-SHA256 test vectors of RFC 4231 (cases 1-4, 6, 7;
 * case 5 checks only the 128-bit prefix it publishes) run through the
 * public segops_sign_user_id(). The RFC's messages contain no NUL byte,
 * so each fits the NUL-terminated user_id argument as raw bytes, even
 * the non-text ones of cases 3 and 4. Then user ids with known
 * signatures (computed independently with Python's hmac module), and the
 * argument checks, including "out untouched on failure".
 */
#include "segops/sign.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct vector {
        const char *name;
        unsigned char key[131];
        size_t key_len;
        char data[160];
        const char *mac; /* hex; shorter than 64 for a truncated case */
};

/* Filled in by fill_vectors(): the keys and data of RFC 4231 section 4
 * are mostly repeated bytes, which reads better as code. */
static struct vector vectors[7];

static void fill_vectors(void)
{
        struct vector *v = vectors;

        memset(vectors, 0, sizeof(vectors));
        /* Test case 1 */
        v[0].name = "RFC 4231 case 1";
        memset(v[0].key, 0x0b, 20);
        v[0].key_len = 20;
        strncpy(v[0].data, "Hi There", sizeof(v[0].data) - 1);
        v[0].mac = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
        /* Test case 2: a key shorter than the length of the hash */
        v[1].name = "RFC 4231 case 2";
        memcpy(v[1].key, "Jefe", 4);
        v[1].key_len = 4;
        strncpy(v[1].data, "what do ya want for nothing?", sizeof(v[1].data) - 1);
        v[1].mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        /* Test case 3: 50 bytes 0xdd (not text, but no NUL) */
        v[2].name = "RFC 4231 case 3";
        memset(v[2].key, 0xaa, 20);
        v[2].key_len = 20;
        memset(v[2].data, 0xdd, 50);
        v[2].mac = "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe";
        /* Test case 4: key 0x01..0x19, 50 bytes 0xcd */
        v[3].name = "RFC 4231 case 4";
        for (int i = 0; i < 25; i++)
                v[3].key[i] = (unsigned char)(i + 1);
        v[3].key_len = 25;
        memset(v[3].data, 0xcd, 50);
        v[3].mac = "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b";
        /* Test case 5: the RFC publishes only the first 128 bits */
        v[4].name = "RFC 4231 case 5 (128-bit prefix)";
        memset(v[4].key, 0x0c, 20);
        v[4].key_len = 20;
        strncpy(v[4].data, "Test With Truncation", sizeof(v[4].data) - 1);
        v[4].mac = "a3b6167473100ee06e0c796c2955552b";
        /* Test case 6: a key larger than the block size */
        v[5].name = "RFC 4231 case 6";
        memset(v[5].key, 0xaa, 131);
        v[5].key_len = 131;
        strncpy(v[5].data, "Test Using Larger Than Block-Size Key - Hash Key First",
                sizeof(v[5].data) - 1);
        v[5].mac = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54";
        /* Test case 7: key and data larger than the block size */
        v[6].name = "RFC 4231 case 7";
        memset(v[6].key, 0xaa, 131);
        v[6].key_len = 131;
        strncpy(v[6].data,
                "This is a test using a larger than block-size key and a larger "
                "than block-size data. The key needs to be hashed before being used by "
                "the HMAC algorithm.",
                sizeof(v[6].data) - 1);
        v[6].mac = "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2";
}

START_TEST(rfc4231)
{
        const struct vector *v;
        char out[65];

        fill_vectors();
        v = &vectors[_i];
        memset(out, 'X', sizeof(out));
        ck_assert_int_eq(segops_sign_user_id(v->key, v->key_len, v->data, out), 0);
        ck_assert_uint_eq(strlen(out), 64);
        ck_assert_msg(strncmp(out, v->mac, strlen(v->mac)) == 0, "%s: got %s, want %s", v->name,
                      out, v->mac);
}
END_TEST

START_TEST(known_user_ids)
{
        static const struct {
                const char *secret;
                size_t secret_len;
                const char *user_id;
                const char *sig;
        } k[] = {
                { "backend-secret", 14, "u1",
                  "f4932702b45931d59b960201eab046762ce45884203433a5dd5cc8cc4ff33b0c" },
                { "backend-secret", 14, "user@example.com",
                  "3d303d85e188e44258aed6c735e6e6489fdc73f3a9ec46cd0698f8a6351db9db" },
                /* The secret is bytes: an embedded NUL counts. */
                { "s3cr3t\0bin", 10, "42",
                  "bfb62f5a55bcf99ae4de7e779e05aa8cdff557259e33e9766eb13ca7b79de5f7" },
                /* UTF-8 user ids are signed as their bytes. */
                { "k", 1, "\xc3\xa9t\xc3\xa9-\xe6\x97\xa5\xe6\x9c\xac",
                  "782ab19da2c4ad9018fde415769534baea7dba7a24a213f396339716c3785f4b" },
        };
        char out[65];

        for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
                ck_assert_int_eq(
                        segops_sign_user_id(k[i].secret, k[i].secret_len, k[i].user_id, out), 0);
                ck_assert_str_eq(out, k[i].sig);
        }
}
END_TEST

START_TEST(lowercase_hex_only)
{
        char out[65];

        ck_assert_int_eq(segops_sign_user_id("x", 1, "y", out), 0);
        ck_assert_uint_eq(strspn(out, "0123456789abcdef"), 64);
        ck_assert_int_eq(out[64], '\0');
}
END_TEST

START_TEST(bad_arguments_leave_out_untouched)
{
        char out[65], before[65];

        memset(out, 'Q', sizeof(out));
        memcpy(before, out, sizeof(out));
        ck_assert_int_eq(segops_sign_user_id(NULL, 3, "u1", out), -EINVAL);
        ck_assert_int_eq(segops_sign_user_id("abc", 0, "u1", out), -EINVAL);
        ck_assert_int_eq(segops_sign_user_id("abc", 3, NULL, out), -EINVAL);
        ck_assert_int_eq(segops_sign_user_id("abc", 3, "", out), -EINVAL);
        ck_assert_int_eq(segops_sign_user_id("abc", 3, "u1", NULL), -EINVAL);
        ck_assert_int_eq(memcmp(out, before, sizeof(out)), 0);
}
END_TEST

static Suite *sign_suite(void)
{
        Suite *s = suite_create("sign");
        TCase *tc;

        tc = tcase_create("rfc4231");
        tcase_add_loop_test(tc, rfc4231, 0, 7);
        suite_add_tcase(s, tc);
        tc = tcase_create("user_ids");
        tcase_add_test(tc, known_user_ids);
        tcase_add_test(tc, lowercase_hex_only);
        suite_add_tcase(s, tc);
        tc = tcase_create("arguments");
        tcase_add_test(tc, bad_arguments_leave_out_untouched);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(sign_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
