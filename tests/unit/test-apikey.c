/* test-apikey.c - unit tests for daemon/apikey.c (suite "apikey").
 *
 * Each case writes a small config and key files into a private mkdtemp
 * directory (and, for the systemd credential, a directory to point
 * $CREDENTIALS_DIRECTORY at) and checks what apikey_load makes of them:
 * the lookup order, the checks of the key and of its file, and the error
 * text, which names the file and line and never contains the key.
 */
#include "apikey.h"
#include "config.h"

#include <check.h>
#include <errno.h>
#include <grp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config-fixture.h"

/* The systemd credential directory of the tests: created empty, and
 * $CREDENTIALS_DIRECTORY pointed at it. */
static const char *creds_begin(void)
{
        static char dir[TPATH_LEN];

        snprintf(dir, sizeof(dir), "%s", tpath("creds"));
        ck_assert_int_eq(mkdir(dir, 0700), 0);
        ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", dir, 1), 0);
        return dir;
}

/* Unset $CREDENTIALS_DIRECTORY and remove the (emptied) directory. */
static void creds_end(void)
{
        ck_assert_int_eq(unsetenv("CREDENTIALS_DIRECTORY"), 0);
        ck_assert_int_eq(rmdir(tpath("creds")), 0);
}

START_TEST(test_key_lookup_order)
{
        char content[1024], err[1024];
        char keyfile[TPATH_LEN];
        char *key = NULL;
        struct cfg c;

        creds_begin();
        write_file("creds/api_key", "sk_fromcredentials1\n");
        snprintf(keyfile, sizeof(keyfile), "%s", write_file("keyfile", "pk_fromkeyfile2 \n\n\t"));
        snprintf(content, sizeof(content),
                 "[upstream]\napi_url = https://x.example\n"
                 "api_key_file = %s\napi_key = sk_inlinekey3\n",
                 keyfile);
        ck_assert_msg(load(&c, content, err, sizeof(err)) == 0, "%s", err);
        ck_assert_uint_eq(cfg_key_line(&c, "upstream", "api_key"), 4);

        /* 1: the systemd credential wins */
        ck_assert_msg(apikey_load(&c, &key, err, sizeof(err)) == 0, "%s", err);
        ck_assert_str_eq(key, "sk_fromcredentials1");
        free(key);
        key = NULL;

        /* 2: a credentials directory without api_key falls through */
        unlink(tpath("creds/api_key"));
        ck_assert_msg(apikey_load(&c, &key, err, sizeof(err)) == 0, "%s", err);
        ck_assert_str_eq(key, "pk_fromkeyfile2"); /* white space stripped */
        free(key);
        key = NULL;
        creds_end();

        /* 3: then the inline key */
        free(c.api_key_file);
        c.api_key_file = NULL;
        ck_assert_msg(apikey_load(&c, &key, err, sizeof(err)) == 0, "%s", err);
        ck_assert_str_eq(key, "sk_inlinekey3");
        free(key);
        key = NULL;

        /* none: an error, except for a dry run */
        free(c.api_key);
        c.api_key = NULL;
        key = (char *)"untouched";
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -ENOKEY);
        ck_assert_str_eq(key, "untouched");
        ck_assert_msg(strstr(err, "no API key"), "%s", err);
        free(c.api_url);
        c.api_url = strdup("stdout");
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), 0);
        ck_assert_ptr_null(key);

        cfg_free(&c);
        unlink(keyfile);
        unlink(tpath("t.conf"));
}
END_TEST

START_TEST(test_bad_key)
{
        char err[1024], want[1024];
        char *key = NULL;
        struct cfg c;

        ck_assert_int_eq(load(&c,
                              "[upstream]\napi_url = stdout\n\n"
                              "api_key = ak_1234567890\n",
                              err, sizeof(err)),
                         0);
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -EINVAL);
        ck_assert_ptr_null(key);
        snprintf(want, sizeof(want),
                 "%s:4: [upstream] api_key: API key must "
                 "start with sk_ or pk_ (value not shown)",
                 tpath("t.conf"));
        ck_assert_str_eq(err, want);
        cfg_free(&c);

        ck_assert_int_eq(load(&c,
                              "[upstream]\napi_url = stdout\n"
                              "api_key = sk_1234\n",
                              err, sizeof(err)),
                         0);
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -EINVAL);
        ck_assert_msg(strstr(err, "must be 8 to 512 characters long (got 7: "
                                  "sk_\xe2\x80\xa6)"),
                      "%s", err);
        cfg_free(&c);
        unlink(tpath("t.conf"));
}
END_TEST

START_TEST(test_unreadable_key_file)
{
        char content[1024], err[1024], want[1024];
        char keyfile[TPATH_LEN];
        char *key = NULL;
        struct cfg c;

        snprintf(keyfile, sizeof(keyfile), "%s", tpath("no_such_key"));
        /* Set but missing is an error, not a fall-through to api_key. */
        snprintf(content, sizeof(content),
                 "[upstream]\napi_url = https://x.example\n"
                 "api_key_file = %s\napi_key = sk_inlinekey3\n",
                 keyfile);
        ck_assert_msg(load(&c, content, err, sizeof(err)) == 0, "%s", err);
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -ENOENT);
        ck_assert_ptr_null(key);
        snprintf(want, sizeof(want), "%s:3: [upstream] api_key_file: %s: %s", tpath("t.conf"),
                 keyfile, strerror(ENOENT));
        ck_assert_str_eq(err, want);

        /* Readable by every user: refused, naming the fix. */
        {
                const char *p = write_file("open_key", "sk_openkey12345\n");

                ck_assert_int_eq(chmod(p, 0644), 0);
                free(c.api_key_file);
                c.api_key_file = strdup(p);
                ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -EPERM);
                ck_assert_ptr_null(key);
                ck_assert_msg(strstr(err, "can be read or written by every user"), "%s", err);
                ck_assert_msg(strstr(err, "root:root 0600, passed as the systemd credential "
                                          "api_key (LoadCredential=api_key:" CFG_DEFAULT_KEY_PATH),
                              "%s", err);
                ck_assert_msg(!strstr(err, "openkey"), "%s", err);
                ck_assert_msg(!strstr(err, "0640"), "%s", err); /* the old advice */
                ck_assert_int_eq(chmod(p, 0600), 0);
                ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), 0);
                ck_assert_str_eq(key, "sk_openkey12345");
                free(key);
                key = NULL;
                unlink(p);
        }

        /* A directory is not a key file. */
        free(c.api_key_file);
        c.api_key_file = strdup(tmpdir);
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -EISDIR);
        ck_assert_ptr_null(key);

        /* Unreadable by permission (root reads anything: skip then). */
        if (geteuid() != 0) {
                const char *p = write_file("locked_key", "sk_lockedkey123\n");

                ck_assert_int_eq(chmod(p, 0), 0);
                free(c.api_key_file);
                c.api_key_file = strdup(p);
                ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -EACCES);
                ck_assert_msg(strstr(err, strerror(EACCES)), "%s", err);
                unlink(p);
        }

        /* An empty key file is "no key yet" (tested in
         * test_empty_key_is_no_key_yet); a missing one is an error. */
        free(c.api_key_file);
        c.api_key_file = strdup(tpath("no_such_key"));
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -ENOENT);
        ck_assert_msg(strstr(err, "no_such_key"), "%s", err);

        cfg_free(&c);
        unlink(tpath("t.conf"));
}
END_TEST

/* An invalid key's error shows no control byte of it: apikey_redact
 * gave its last 4 bytes, escape sequences included (found by
 * fuzz-config; tests/fuzz/corpus/config/crash-key-escape). */
START_TEST(test_key_control_chars)
{
        char err[1024];
        char *key = NULL;
        struct cfg c;

        ck_assert_int_eq(load(&c,
                              "[upstream]\napi_url = stdout\n"
                              "api_key = sk_live_0123456789\x1b[2J\n",
                              err, sizeof(err)),
                         0);
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -EINVAL);
        ck_assert_ptr_null(key);
        ck_assert_msg(strstr(err, "non-printable character at position 19 (sk_\xe2\x80\xa6)"), "%s",
                      err);
        for (const char *p = err; *p; p++)
                ck_assert_msg((unsigned char)*p >= 0x20, "control byte in: %s", err);
        cfg_free(&c);
        unlink(tpath("t.conf"));
}
END_TEST

START_TEST(test_redact)
{
        char out[64];

        apikey_redact("sk_abcdefghijkl1234", out, sizeof(out));
        ck_assert_str_eq(out, "sk_\xe2\x80\xa6"
                              "1234");
        apikey_redact("pk_abcdefgh9876", out, sizeof(out));
        ck_assert_str_eq(out, "pk_\xe2\x80\xa6"
                              "9876");
        apikey_redact("pk_short", out, sizeof(out));
        ck_assert_str_eq(out, "pk_\xe2\x80\xa6");
        apikey_redact("sk_12345678", out, sizeof(out)); /* 11 chars */
        ck_assert_str_eq(out, "sk_\xe2\x80\xa6");
        apikey_redact("xx_abcdefghijkl1234", out, sizeof(out));
        ck_assert_str_eq(out, "\xe2\x80\xa6");
        apikey_redact(NULL, out, sizeof(out));
        ck_assert_str_eq(out, "(none)");
        /* A tail that is not printable is not shown (found by fuzz-config). */
        apikey_redact("sk_abcdefghijkl\x1b[2J", out, sizeof(out));
        ck_assert_str_eq(out, "sk_\xe2\x80\xa6");
        apikey_redact("sk_abcdefghijkl12\xc3\xa9", out, sizeof(out));
        ck_assert_str_eq(out, "sk_\xe2\x80\xa6");

        /* A short buffer truncates, never overflows. */
        memset(out, 'Z', sizeof(out));
        apikey_redact("sk_abcdefghijkl1234", out, 5);
        ck_assert_uint_eq(strlen(out), 4);
        ck_assert_int_eq(out[5], 'Z');
        apikey_redact("sk_abcdefghijkl1234", NULL, 0);
}
END_TEST

/* apikey_load_from says whether the key is the systemd credential. */
START_TEST(test_credential_flag)
{
        char content[1024], err[1024];
        char *key = NULL;
        bool credential = true;
        struct cfg c;

        creds_begin();
        write_file("creds/api_key", "pk_fromcredentials1\n");
        snprintf(content, sizeof(content),
                 "[upstream]\napi_url = https://x.example\napi_key = sk_inlinekey3\n");
        ck_assert_msg(load(&c, content, err, sizeof(err)) == 0, "%s", err);
        ck_assert_msg(apikey_load_from(&c, &key, &credential, err, sizeof(err)) == 0, "%s", err);
        ck_assert_str_eq(key, "pk_fromcredentials1");
        ck_assert(credential);
        free(key);
        key = NULL;
        /* NULL: the caller does not ask */
        ck_assert_int_eq(apikey_load_from(&c, &key, NULL, err, sizeof(err)), 0);
        free(key);
        key = NULL;

        /* A credential that fails its checks is no credential in use. */
        write_file("creds/api_key", "xx_notakey\n");
        credential = true;
        ck_assert_int_eq(apikey_load_from(&c, &key, &credential, err, sizeof(err)), -EINVAL);
        ck_assert(!credential);
        ck_assert_ptr_null(key);

        /* Without the credential: the inline key, not a credential. */
        unlink(tpath("creds/api_key"));
        credential = true;
        ck_assert_int_eq(apikey_load_from(&c, &key, &credential, err, sizeof(err)), 0);
        ck_assert_str_eq(key, "sk_inlinekey3");
        ck_assert(!credential);
        free(key);

        creds_end();
        cfg_free(&c);
        unlink(tpath("t.conf"));
}
END_TEST

/* An empty (or white space only) key file or credential is no error:
 * the key is yet to come. 0 with no key, the credential flag saying
 * where, and the hint naming where the key goes. An inline key is
 * passed over by neither. */
START_TEST(test_empty_key_is_no_key_yet)
{
        char content[1024], err[1024] = "", hint[1024];
        char keyfile[TPATH_LEN];
        char *key = (char *)"untouched";
        bool credential = true;
        struct cfg c;

        snprintf(keyfile, sizeof(keyfile), "%s", write_file("blank_key", " \n\t\n"));
        snprintf(content, sizeof(content),
                 "[upstream]\napi_url = https://x.example\napi_key_file = %s\n", keyfile);
        ck_assert_msg(load(&c, content, err, sizeof(err)) == 0, "%s", err);
        ck_assert_msg(apikey_load_from(&c, &key, &credential, err, sizeof(err)) == 0, "%s", err);
        ck_assert_ptr_null(key);
        ck_assert(!credential);
        apikey_missing_hint(&c, credential, hint, sizeof(hint));
        ck_assert_msg(strstr(hint, keyfile) && strstr(hint, "SIGHUP"), "%s", hint);
        cfg_free(&c);

        /* The credential, empty: it wins over the key file, and says so. */
        creds_begin();
        write_file("creds/api_key", "");
        write_file("blank_key", "sk_notused1234\n");
        ck_assert_msg(load(&c, content, err, sizeof(err)) == 0, "%s", err);
        key = (char *)"untouched";
        credential = false;
        ck_assert_msg(apikey_load_from(&c, &key, &credential, err, sizeof(err)) == 0, "%s", err);
        ck_assert_ptr_null(key);
        ck_assert(credential);
        apikey_missing_hint(&c, credential, hint, sizeof(hint));
        ck_assert_msg(strstr(hint, "credential") && strstr(hint, "restart"), "%s", hint);
        unlink(tpath("creds/api_key"));
        creds_end();

        /* A key after white space is a key (trailing space is stripped;
         * leading is not: it is refused, not taken as "no key"). */
        write_file("blank_key", "\nsk_afterblank1\n");
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -EINVAL);
        ck_assert_ptr_null(key);
        cfg_free(&c);
        unlink(keyfile);
        unlink(tpath("t.conf"));
}
END_TEST

/* What is wrong with the credential is said with its path, and the
 * lookup stops there (no fall-through to a key of the config file). */
START_TEST(test_credential_errors)
{
        char err[1024], want[1024], credpath[TPATH_LEN];
        char longdir[PATH_MAX + 32];
        char *key = NULL;
        struct cfg c;

        snprintf(credpath, sizeof(credpath), "%s", tpath("creds/api_key"));
        ck_assert_msg(load(&c, "[upstream]\napi_url = https://x.example\napi_key = sk_inline123\n",
                           err, sizeof(err)) == 0,
                      "%s", err);
        creds_begin();

        write_file("creds/api_key", SECRET "\n");
        ck_assert_int_eq(chmod(credpath, 0604), 0);
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -EPERM);
        snprintf(want, sizeof(want),
                 "credential api_key (%s): can be read or written by every user; keep it to its "
                 "owner (systemd's credentials are 0400)",
                 credpath);
        ck_assert_str_eq(err, want);
        ck_assert_ptr_null(key);

        ck_assert_int_eq(chmod(credpath, 0600), 0);
        write_file("creds/api_key", SECRET " tail\n");
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -EINVAL);
        snprintf(want, sizeof(want),
                 "credential api_key (%s): API key contains white space or a non-printable "
                 "character at position %zu (sk_\xe2\x80\xa6tail)",
                 credpath, strlen(SECRET) + 1);
        ck_assert_str_eq(err, want);
        ck_assert_msg(!strstr(err, SECRET_CORE), "%s", err);
        unlink(credpath);

        ck_assert_int_eq(mkdir(credpath, 0700), 0);
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -EISDIR);
        snprintf(want, sizeof(want), "credential api_key (%s): cannot read: %s", credpath,
                 strerror(EISDIR));
        ck_assert_str_eq(err, want);
        ck_assert_int_eq(rmdir(credpath), 0);

        memset(longdir, 'd', sizeof(longdir));
        longdir[0] = '/';
        longdir[sizeof(longdir) - 1] = '\0';
        ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", longdir, 1), 0);
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -ENAMETOOLONG);
        ck_assert_str_eq(err, "$CREDENTIALS_DIRECTORY is too long");

        /* Empty counts as unset. */
        ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", "", 1), 0);
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), 0);
        ck_assert_str_eq(key, "sk_inline123");
        free(key);

        creds_end();
        cfg_free(&c);
        unlink(tpath("t.conf"));
}
END_TEST

/* 8 to 512 characters, counted after trailing white space goes. */
START_TEST(test_key_length)
{
        static const struct {
                size_t len;
                int r;
        } cases[] = { { 7, -EINVAL }, { 8, 0 }, { 512, 0 }, { 513, -EINVAL } };
        char content[1024], err[1024], keyfile[TPATH_LEN], text[600];
        char *key = NULL;
        struct cfg c;

        snprintf(keyfile, sizeof(keyfile), "%s", tpath("key"));
        snprintf(content, sizeof(content),
                 "[upstream]\napi_url = https://x.example\n"
                 "api_key_file = %s\n",
                 keyfile);
        ck_assert_msg(load(&c, content, err, sizeof(err)) == 0, "%s", err);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                memset(text, 'k', sizeof(text));
                memcpy(text, "sk_", 3);
                memcpy(text + cases[i].len, " \n\t\n", 5);
                write_file("key", text);
                ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), cases[i].r);
                if (cases[i].r == 0) {
                        ck_assert_uint_eq(strlen(key), cases[i].len);
                        free(key);
                        key = NULL;
                } else {
                        ck_assert_msg(strstr(err, "API key must be 8 to 512 characters long"), "%s",
                                      err);
                        ck_assert_ptr_null(key);
                }
        }
        unlink(keyfile);
        cfg_free(&c);
        unlink(tpath("t.conf"));
}
END_TEST

/* A key pasted into api_key_file is named by its redacted form. */
START_TEST(test_key_as_file_name)
{
        char err[1024], want[1024];
        char *key = NULL;
        struct cfg c;

        ck_assert_msg(load(&c,
                           "[upstream]\napi_url = https://x.example\n\napi_key_file = " SECRET "\n",
                           err, sizeof(err)) == 0,
                      "%s", err);
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -ENOENT);
        snprintf(want, sizeof(want),
                 "%s:4: [upstream] api_key_file: sk_\xe2\x80\xa6w9x8 (a key, not a file name): %s",
                 tpath("t.conf"), strerror(ENOENT));
        ck_assert_str_eq(err, want);
        cfg_free(&c);
        unlink(tpath("t.conf"));
}
END_TEST

START_TEST(test_bad_arguments)
{
        char err[256];
        char *key = (char *)"untouched";
        struct cfg c;

        ck_assert_int_eq(apikey_load(NULL, &key, err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "apikey_load: no config");
        cfg_defaults(&c);
        ck_assert_int_eq(apikey_load_from(&c, NULL, NULL, err, sizeof(err)), -EINVAL);
        /* No err buffer is fine. */
        ck_assert_int_eq(apikey_load(&c, &key, NULL, 0), -ENOKEY);
        ck_assert_str_eq(key, "untouched");
        cfg_free(&c);
}
END_TEST

/* The policy, row by row: who besides the owner may read or write. */
START_TEST(test_access_policy)
{
        static const gid_t senders[] = { 100, 200 };
        static const struct {
                mode_t mode;
                gid_t gid;
                size_t nsenders;
                enum apikey_access want;
        } rows[] = {
                { 0600, 100, 2, APIKEY_OWNER_ONLY },
                { 0400, 100, 2, APIKEY_OWNER_ONLY },
                { 0700, 100, 2, APIKEY_OWNER_ONLY }, /* the owner's bits are the owner's */
                { 0640, 100, 2, APIKEY_SENDERS },
                { 0640, 200, 2, APIKEY_SENDERS }, /* the second group of the list */
                { 0620, 200, 2, APIKEY_SENDERS }, /* writing: a sender could swap the key */
                { 0660, 100, 2, APIKEY_SENDERS },
                { 0640, 300, 2, APIKEY_GROUP },
                { 0620, 300, 2, APIKEY_GROUP },
                { 0640, 200, 1, APIKEY_GROUP }, /* only 100 sends */
                { 0640, 100, 0, APIKEY_GROUP }, /* no senders given: the credential */
                { 0604, 100, 2, APIKEY_EVERYONE },
                { 0602, 300, 2, APIKEY_EVERYONE },
                { 0644, 100, 0, APIKEY_EVERYONE },
                { 0100600, 100, 2, APIKEY_OWNER_ONLY }, /* S_IFREG is not a permission */
        };
        size_t i;

        for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
                ck_assert_msg(apikey_access(rows[i].mode, rows[i].gid, senders, rows[i].nsenders) ==
                                      rows[i].want,
                              "row %zu: mode %o gid %u", i, (unsigned)rows[i].mode,
                              (unsigned)rows[i].gid);
}
END_TEST

/* A gid that is none of these (nor the group segops): a group of no
 * sender, for a file that a group of another purpose may read. */
static gid_t other_gid(gid_t a, gid_t b)
{
        gid_t g = 54321;

        while (g == a || g == b)
                g++;
        return g;
}

/* The senders' groups: the sockets' group, by default this process's
 * own, and the group named segops where it exists. */
START_TEST(test_senders_groups)
{
        struct group *gr = getgrnam(APIKEY_SENDERS_GROUP);
        gid_t out[2];
        struct cfg c;

        cfg_defaults(&c);
        ck_assert_uint_ge(apikey_senders(&c, out), 1);
        ck_assert_uint_eq(out[0], getegid());
        c.socket_group = 4242;
        ck_assert_uint_ge(apikey_senders(&c, out), 1);
        ck_assert_uint_eq(out[0], 4242);
        if (gr && gr->gr_gid != 4242) {
                ck_assert_uint_eq(apikey_senders(&c, out), 2);
                ck_assert_uint_eq(out[1], gr->gr_gid);
                c.socket_group = gr->gr_gid; /* named twice, listed once */
                ck_assert_uint_eq(apikey_senders(&c, out), 1);
        } else if (!gr)
                ck_assert_uint_eq(apikey_senders(&c, out), 1);
        cfg_free(&c);
}
END_TEST

/* A key file the senders' group may read is refused, naming the file,
 * the group and the fix; one that another group may read loads, with a
 * warning for the log; an owner-only one loads without. The credential
 * is not held to the group rule (systemd's ACL shows in its group bits). */
START_TEST(test_key_file_group)
{
        char content[1024], err[1024], want[1024], keyfile[TPATH_LEN];
        struct group *gr;
        char *key = NULL;
        struct cfg c;

        snprintf(keyfile, sizeof(keyfile), "%s", write_file("gkey", SECRET "\n"));
        ck_assert_int_eq(chmod(keyfile, 0640), 0);
        snprintf(content, sizeof(content),
                 "[upstream]\napi_url = https://x.example\napi_key_file = %s\n", keyfile);
        ck_assert_msg(load(&c, content, err, sizeof(err)) == 0, "%s", err);

        /* socket_group unset: the sockets get our group, the file's. */
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -EPERM);
        ck_assert_ptr_null(key);
        gr = getgrgid(getegid());
        if (gr)
                snprintf(want, sizeof(want),
                         "%s:3: [upstream] api_key_file: %s can be read or "
                         "written by group %s, whose members may send events",
                         tpath("t.conf"), keyfile, gr->gr_name);
        else
                snprintf(want, sizeof(want),
                         "%s:3: [upstream] api_key_file: %s can be read or "
                         "written by group %u, whose members may send events",
                         tpath("t.conf"), keyfile, (unsigned)getegid());
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
        ck_assert_msg(strstr(err, "root:root 0600, passed as the systemd credential api_key "
                                  "(LoadCredential=api_key:" CFG_DEFAULT_KEY_PATH " in the unit)"),
                      "%s", err);
        ck_assert_msg(!strstr(err, SECRET_CORE), "%s", err);
        ck_assert_int_eq(apikey_file_warning(&c, err, sizeof(err)), 0);

        /* Group-writable only: still the senders', still refused. */
        ck_assert_int_eq(chmod(keyfile, 0620), 0);
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -EPERM);

        /* socket_group named: that group sends; ours is another. */
        gr = getgrnam(APIKEY_SENDERS_GROUP);
        c.socket_group = other_gid(getegid(), gr ? gr->gr_gid : getegid());
        ck_assert_int_eq(chmod(keyfile, 0640), 0);
        ck_assert_msg(apikey_load(&c, &key, err, sizeof(err)) == 0, "%s", err);
        ck_assert_str_eq(key, SECRET);
        free(key);
        key = NULL;
        ck_assert_int_eq(apikey_file_warning(&c, err, sizeof(err)), 1);
        snprintf(want, sizeof(want),
                 "%s:3: [upstream] api_key_file: %s can be read or written by "
                 "group ",
                 tpath("t.conf"), keyfile);
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
        ck_assert_msg(strstr(err, "prefer owner-only (chmod 0600)"), "%s", err);

        /* Owner-only: nothing to say. */
        ck_assert_int_eq(chmod(keyfile, 0600), 0);
        ck_assert_msg(apikey_load(&c, &key, err, sizeof(err)) == 0, "%s", err);
        free(key);
        key = NULL;
        ck_assert_int_eq(apikey_file_warning(&c, err, sizeof(err)), 0);

        /* The file in the sockets' group, by number. */
        c.socket_group = getegid();
        ck_assert_int_eq(chmod(keyfile, 0640), 0);
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -EPERM);

        /* Group segops, whatever socket_group says: the packaged units
         * give it the sockets. Needs the group, and root to chown. */
        if (gr && geteuid() == 0) {
                c.socket_group = other_gid(getegid(), gr->gr_gid);
                ck_assert_int_eq(chown(keyfile, (uid_t)-1, gr->gr_gid), 0);
                ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -EPERM);
                ck_assert_msg(strstr(err, "by group " APIKEY_SENDERS_GROUP ", whose members"), "%s",
                              err);
        } else
                fprintf(stderr,
                        "test_key_file_group: no group %s here (or not root): the named "
                        "group's case is not run\n",
                        APIKEY_SENDERS_GROUP);

        /* The credential: 0440 as systemd's ACL shows it, accepted. */
        creds_begin();
        write_file("creds/api_key", "sk_fromcredentials1\n");
        ck_assert_int_eq(chmod(tpath("creds/api_key"), 0440), 0);
        c.socket_group = getegid();
        ck_assert_msg(apikey_load(&c, &key, err, sizeof(err)) == 0, "%s", err);
        ck_assert_str_eq(key, "sk_fromcredentials1");
        free(key);
        unlink(tpath("creds/api_key"));
        creds_end();

        unlink(keyfile);
        cfg_free(&c);
        unlink(tpath("t.conf"));
}
END_TEST

static Suite *apikey_suite(void)
{
        Suite *s = suite_create("apikey");

        ADD_CASE(s, test_key_lookup_order);
        ADD_CASE(s, test_bad_key);
        ADD_CASE(s, test_unreadable_key_file);
        ADD_CASE(s, test_redact);
        ADD_CASE(s, test_key_control_chars);
        ADD_CASE(s, test_credential_flag);
        ADD_CASE(s, test_empty_key_is_no_key_yet);
        ADD_CASE(s, test_credential_errors);
        ADD_CASE(s, test_key_length);
        ADD_CASE(s, test_key_as_file_name);
        ADD_CASE(s, test_bad_arguments);
        ADD_CASE(s, test_access_policy);
        ADD_CASE(s, test_senders_groups);
        ADD_CASE(s, test_key_file_group);
        return s;
}

int main(void)
{
        return run_in_tmpdir("test-apikey", apikey_suite());
}
