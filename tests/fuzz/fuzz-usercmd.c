/* fuzz-usercmd.c - libFuzzer target for what daemon/usercmd.c reads
 * from others: the user_context_command line (usercmd_split) and the
 * identity the command prints (usercmd_parse_identity). Every input is
 * given to both: as a command line up to its first NUL, and whole as the
 * command's output.
 *
 * Invariants of the splitter: the words fit the buffer it is given,
 * which is exactly as long as the command (the sanitizers catch a
 * byte more); argc is 1..max_args - 1 and argv[argc] is NULL; each word
 * lies inside the buffer; and the words, quoted again ("..." with \" and
 * \\ escaped) and joined by spaces, split back into the same words.
 * Invariants of the identity: accepted means a user_id of 1-256 bytes
 * and a user_id_sig of 0-256, NUL-terminated, with no NUL inside;
 * refused means a reason.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "usercmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 64 /* usercmd.c's own limit */

static void check_words(char *const *argv, int argc, const char *buf, size_t buflen)
{
        assert(argc >= 1 && argc <= MAX_ARGS - 1);
        assert(argv[argc] == NULL);
        for (int i = 0; i < argc; i++) {
                assert(argv[i] >= buf && argv[i] < buf + buflen);
                assert(memchr(argv[i], '\0', (size_t)(buf + buflen - argv[i])));
        }
}

/* The words quoted again, joined: a command that must give them back. */
static char *requote(char *const *argv, int argc)
{
        size_t n = 1;
        char *s, *w;

        for (int i = 0; i < argc; i++)
                n += 2 * strlen(argv[i]) + 3;
        s = w = malloc(n);
        if (!s)
                return NULL;
        for (int i = 0; i < argc; i++) {
                if (i)
                        *w++ = ' ';
                *w++ = '"';
                for (const char *p = argv[i]; *p; p++) {
                        if (*p == '"' || *p == '\\')
                                *w++ = '\\';
                        *w++ = *p;
                }
                *w++ = '"';
        }
        *w = '\0';
        return s;
}

static void split(const char *cmd)
{
        size_t buflen = strlen(cmd) + 1;
        char *buf = malloc(buflen), *argv[MAX_ARGS + 1], *again, *buf2, *argv2[MAX_ARGS + 1];
        int argc, argc2;

        if (!buf)
                return;
        /* Too small a buffer is refused, never overrun. */
        assert(usercmd_split(cmd, buf, buflen - 1, argv, MAX_ARGS) == -EINVAL);
        argc = usercmd_split(cmd, buf, buflen, argv, MAX_ARGS);
        assert(argc == -EINVAL || argc >= 1);
        if (argc < 0) {
                free(buf);
                return;
        }
        check_words(argv, argc, buf, buflen);
        again = requote(argv, argc);
        buf2 = again ? malloc(strlen(again) + 1) : NULL;
        if (buf2) {
                argc2 = usercmd_split(again, buf2, strlen(again) + 1, argv2, MAX_ARGS);
                assert(argc2 == argc);
                for (int i = 0; i < argc; i++)
                        assert(strcmp(argv[i], argv2[i]) == 0);
        }
        free(buf2);
        free(again);
        free(buf);
}

static void identity(const char *out, size_t n)
{
        struct usercmd_result res;
        size_t uid, sig;

        memset(&res, 0, sizeof(res));
        if (usercmd_parse_identity(out, n, &res) < 0) {
                assert(res.why && *res.why);
                return;
        }
        uid = strnlen(res.user_id, sizeof(res.user_id));
        sig = strnlen(res.user_id_sig, sizeof(res.user_id_sig));
        assert(uid >= 1 && uid <= PROTO_USER_ID_MAX);
        assert(sig <= PROTO_USER_ID_SIG_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* Exact-size copies, so the sanitizers catch a read past them. */
        char *cmd = malloc(size + 1), *out = malloc(size ? size : 1);

        if (cmd && out) {
                memcpy(cmd, data, size);
                cmd[size] = '\0';
                split(cmd);
                memcpy(out, data, size);
                identity(out, size);
        }
        free(cmd);
        free(out);
        return 0;
}
