/* config-fixture.h - scratch files for the configuration's unit tests
 * (test-config.c, test-apikey.c): a private mkdtemp directory, small
 * files written into it, a config loaded from one, and a distinctive
 * key that no error text may ever contain.
 *
 * Each test program is one translation unit, so the state below is its
 * own; the helpers are static inline so a program need not use them all.
 */
#ifndef SEGOPS_TESTS_CONFIG_FIXTURE_H
#define SEGOPS_TESTS_CONFIG_FIXTURE_H

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

/* A distinctive key: no error text may ever contain SECRET_CORE. */
#define SECRET_CORE "ZZsecretVALUE42q"
#define SECRET "sk_" SECRET_CORE "w9x8"

/* Short, so that every path built from it fits the buffers of the tests. */
#define TPATH_LEN 320
static char tmpdir[256];

/* Path of a file in tmpdir, in a small ring of buffers: valid for the
 * next seven calls; a test that holds a path longer copies it. */
static inline const char *tpath(const char *name)
{
        static char ring[8][TPATH_LEN];
        static unsigned next;
        char *p = ring[next++ % 8];

        snprintf(p, TPATH_LEN, "%s/%s", tmpdir, name);
        return p;
}

/* Write content to tmpdir/name, mode 0600; returns its path (tpath). */
static inline const char *write_file(const char *name, const char *content)
{
        const char *p = tpath(name);
        FILE *f = fopen(p, "we");

        ck_assert_msg(f != NULL, "fopen %s: %s", p, strerror(errno));
        ck_assert_int_eq(fputs(content, f) >= 0, 1);
        ck_assert_int_eq(fclose(f), 0);
        ck_assert_int_eq(chmod(p, 0600), 0); /* keys must not be world-readable */
        return p;
}

/* Defaults, then the file t.conf with this content; returns cfg_load's
 * result. */
static inline int load(struct cfg *c, const char *content, char *err, size_t errlen)
{
        const char *p = write_file("t.conf", content);

        cfg_defaults(c);
        err[0] = '\0';
        return cfg_load(c, p, err, errlen);
}

/* Remove what a failed test may have left behind: files depth levels
 * deep (the tests create at most one subdirectory). */
static inline void remove_tree(const char *dir, int depth)
{
        struct dirent *e;
        DIR *d = opendir(dir);
        unsigned n = 0;

        if (!d)
                return;
        while ((e = readdir(d)) != NULL && n++ < 1000) {
                char p[PATH_MAX];
                struct stat sb;

                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                        continue;
                if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) >= sizeof(p))
                        continue;
                if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode) && depth > 0)
                        remove_tree(p, depth - 1);
                else
                        unlink(p);
        }
        closedir(d);
        rmdir(dir);
}

/* One test case of its own per behaviour, named after the test. */
#define ADD_CASE(suite, test)                                                                      \
        do {                                                                                       \
                TCase *tc_ = tcase_create(#test);                                                  \
                tcase_add_test(tc_, test);                                                         \
                suite_add_tcase((suite), tc_);                                                     \
        } while (0)

/* Run suite in a fresh tmpdir named after prog, without the caller's
 * $CREDENTIALS_DIRECTORY; returns main's exit status. */
static inline int run_in_tmpdir(const char *prog, Suite *suite)
{
        const char *base = getenv("TMPDIR");
        SRunner *sr;
        int failed;

        snprintf(tmpdir, sizeof(tmpdir), "%s/%s.XXXXXX", base && *base ? base : "/tmp", prog);
        if (!mkdtemp(tmpdir)) {
                perror("mkdtemp");
                return 1;
        }
        unsetenv("CREDENTIALS_DIRECTORY");
        sr = srunner_create(suite);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        remove_tree(tmpdir, 1);
        return failed == 0 ? 0 : 1;
}

#endif
