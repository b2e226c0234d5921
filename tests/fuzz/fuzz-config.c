/* fuzz-config.c - libFuzzer target for the configuration: the INI file
 * (cfg_load, daemon/config-file.c and config-value.c), its validation
 * (cfg_validate) and the API key (apikey_load_from, daemon/apikey.c).
 *
 * The input is the config file, optionally followed by a line
 * "%%KEYFILE%%" and the contents of a key file. Both are written to
 * in-memory files (memfd_create; the key file 0600), read through
 * /proc/self/fd; api_key_file, when the config sets one that is not
 * itself a key, is pointed at that key file, so nothing else on the
 * machine is ever opened, and the systemd credential directory is unset.
 *
 * Invariants: no crash, no leak; loading the same file again over the
 * result gives the same answer; an accepted key is what apikey.h
 * promises (sk_ or pk_, 8-512 visible characters); and no error text
 * holds a control character or any key: neither an sk_/pk_ word that
 * starts a value, a name or a section in the file (config-file.c never
 * shows one) nor the key file's key (apikey.c shows it redacted).
 */
#include <assert.h>
#include <ctype.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apikey.h"
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEYFILE_MARK "\n%%KEYFILE%%\n"
#define MAX_SECRETS 64

static int conf_fd = -1, key_fd = -1;
static char conf_path[64], key_path[64];
static const char absent_path[] = "/nonexistent/segops-fuzz/api_key";

/* In-memory files (a file on disk costs a journal commit per input),
 * opened by path as cfg_load and apikey_load do. */
static void setup(void)
{
        if (conf_fd >= 0)
                return;
        conf_fd = memfd_create("segops-fuzz-conf", MFD_CLOEXEC);
        key_fd = memfd_create("segops-fuzz-key", MFD_CLOEXEC);
        assert(conf_fd >= 0 && key_fd >= 0);
        assert(fchmod(key_fd, 0600) == 0);
        snprintf(conf_path, sizeof(conf_path), "/proc/self/fd/%d", conf_fd);
        snprintf(key_path, sizeof(key_path), "/proc/self/fd/%d", key_fd);
        unsetenv("CREDENTIALS_DIRECTORY");
}

static void write_file(int fd, const uint8_t *p, size_t n)
{
        assert(ftruncate(fd, 0) == 0);
        assert(pwrite(fd, p, n, 0) == (ssize_t)n);
}

static bool looks_like_key(const uint8_t *p, size_t n)
{
        return n >= 3 && (memcmp(p, "sk_", 3) == 0 || memcmp(p, "pk_", 3) == 0);
}

static size_t visible_run(const uint8_t *p, size_t n)
{
        size_t i = 0;

        while (i < n && p[i] > 0x20 && p[i] < 0x7f)
                i++;
        return i;
}

/* Does the byte at p start a name, a section or a value of the file:
 * only blanks before it since the line's start, right after its '['
 * (a section name is shown as written), or blanks after its first '='
 * or ':' (inih's delimiters)? */
static bool at_start(const uint8_t *text, size_t p)
{
        size_t ls = p, b = p, q;

        while (ls > 0 && text[ls - 1] != '\n')
                ls--;
        while (b > ls && (text[b - 1] == ' ' || text[b - 1] == '\t'))
                b--;
        if (b == ls)
                return true;
        q = ls + strspn((const char *)text + ls, " \t");
        if (q < p && text[q] == '[')
                return p == q + 1; /* a section line has no delimiter */
        while (q < b && text[q] != '=' && text[q] != ':')
                q++;
        return q + 1 == b;
}

struct secrets {
        const uint8_t *p[MAX_SECRETS];
        size_t n[MAX_SECRETS];
        unsigned count;
};

/* Whether every occurrence of s (n bytes) in text starts a value: one
 * anywhere else may be shown, as part of another value. */
static bool only_at_starts(const uint8_t *text, size_t len, const uint8_t *s, size_t n)
{
        for (size_t i = 0; i + n <= len; i++)
                if (!memcmp(text + i, s, n) && !at_start(text, i))
                        return false;
        return true;
}

static void add_secret(struct secrets *sec, const uint8_t *text, size_t len, const uint8_t *s,
                       size_t n)
{
        if (sec->count < MAX_SECRETS && n >= 8 && only_at_starts(text, len, s, n)) {
                sec->p[sec->count] = s;
                sec->n[sec->count] = n;
                sec->count++;
        }
}

static void find_secrets(struct secrets *sec, const uint8_t *text, size_t len, const uint8_t *key,
                         size_t keylen)
{
        sec->count = 0;
        for (size_t i = 0; i + 3 <= len; i++)
                if (looks_like_key(text + i, len - i) && at_start(text, i))
                        add_secret(sec, text, len, text + i, visible_run(text + i, len - i));
        /* The key file's key must not be shown even where the file has it. */
        if (key && looks_like_key(key, keylen)) {
                size_t n = visible_run(key, keylen);

                if (n >= 8 && !memmem(text, len, key, n) && sec->count < MAX_SECRETS) {
                        sec->p[sec->count] = key;
                        sec->n[sec->count] = n;
                        sec->count++;
                }
        }
}

static void check_err(const char *err, const struct secrets *sec)
{
        size_t n = strlen(err);

        for (size_t i = 0; i < n; i++)
                assert((unsigned char)err[i] >= 0x20 && err[i] != 0x7f);
        for (unsigned k = 0; k < sec->count; k++)
                assert(!memmem(err, n, sec->p[k], sec->n[k]));
}

static void check_key(const char *key)
{
        size_t n = strlen(key);

        assert(n >= 8 && n <= 512 && looks_like_key((const uint8_t *)key, n));
        assert(visible_run((const uint8_t *)key, n) == n);
}

/* Whether a key file of these bytes holds no key: white space up to
 * its end or its first NUL (a key is read as a C string). */
static bool blank(const uint8_t *p, size_t n)
{
        for (size_t i = 0; i < n && p[i]; i++)
                if (!isspace(p[i]))
                        return false;
        return true;
}

/* blank_keyfile: the key file exists and holds no key ("no key yet"). */
static void load_key(struct cfg *c, bool has_keyfile, bool blank_keyfile, const struct secrets *sec)
{
        char err[1024] = "", *key = NULL;
        bool credential = true;
        int r;

        if (c->api_key_file &&
            !looks_like_key((const uint8_t *)c->api_key_file, strlen(c->api_key_file))) {
                free(c->api_key_file);
                c->api_key_file = strdup(has_keyfile ? key_path : absent_path);
        }
        r = apikey_load_from(c, &key, &credential, err, sizeof(err));
        check_err(err, sec);
        assert(!credential);
        if (r == 0 && key)
                check_key(key);
        else if (r == 0)
                assert((c->api_url && !strcmp(c->api_url, "stdout")) ||
                       (blank_keyfile && c->api_key_file && !strcmp(c->api_key_file, key_path)));
        else
                assert(err[0] && !key);
        free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const uint8_t *mark = memmem(data, size, KEYFILE_MARK, strlen(KEYFILE_MARK));
        size_t conf_len = mark ? (size_t)(mark - data) : size;
        const uint8_t *key = mark ? mark + strlen(KEYFILE_MARK) : NULL;
        size_t key_len = mark ? size - conf_len - strlen(KEYFILE_MARK) : 0;
        char err[1024] = "", err2[1024] = "";
        struct secrets sec;
        struct cfg c;
        int r, r2;

        setup();
        write_file(conf_fd, data, conf_len);
        write_file(key_fd, key ? key : data, key_len);
        find_secrets(&sec, data, conf_len, key, key_len);

        cfg_defaults(&c);
        r = cfg_load(&c, conf_path, err, sizeof(err));
        check_err(err, &sec);
        if (r < 0) {
                assert(err[0]);
                cfg_free(&c);
                return 0;
        }
        /* A reload of the same file over it: the same answer. */
        r2 = cfg_load(&c, conf_path, err2, sizeof(err2));
        check_err(err2, &sec);
        assert(r2 == r);
        (void)cfg_key_line(&c, "upstream", "api_key");
        err[0] = '\0';
        if (cfg_validate(&c, err, sizeof(err)) < 0)
                assert(err[0]);
        check_err(err, &sec);
        load_key(&c, mark != NULL, mark && blank(key, key_len), &sec);
        cfg_free(&c);
        return 0;
}
