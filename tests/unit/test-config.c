/* test-config.c - unit tests for daemon/config.c (suite "config").
 *
 * Each case writes small INI and key files into a private mkdtemp
 * directory and checks what cfg_load, cfg_validate and apikey_load make
 * of them: the values, and above all the error text, which must name
 * file, line and key and must never contain an API key.
 */
#include "apikey.h"
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A distinctive key: no error text may ever contain SECRET_CORE. */
#define SECRET_CORE "ZZsecretVALUE42q"
#define SECRET "sk_" SECRET_CORE "w9x8"

/* Short, so that every path built from it fits the buffers below. */
#define TPATH_LEN 320
static char tmpdir[256];

/* Path of a file in tmpdir, in a small ring of buffers: valid for the
 * next seven calls; a test that holds a path longer copies it. */
static const char *tpath(const char *name)
{
        static char ring[8][TPATH_LEN];
        static unsigned next;
        char *p = ring[next++ % 8];

        snprintf(p, TPATH_LEN, "%s/%s", tmpdir, name);
        return p;
}

static const char *write_file(const char *name, const char *content)
{
        const char *p = tpath(name);
        FILE *f = fopen(p, "we");

        ck_assert_msg(f != NULL, "fopen %s: %s", p, strerror(errno));
        ck_assert_int_eq(fputs(content, f) >= 0, 1);
        ck_assert_int_eq(fclose(f), 0);
        ck_assert_int_eq(chmod(p, 0600), 0); /* keys must not be world-readable */
        return p;
}

/* Defaults, then the file with this content; returns cfg_load's result. */
static int load(struct cfg *c, const char *content, char *err, size_t errlen)
{
        const char *p = write_file("t.conf", content);

        cfg_defaults(c);
        err[0] = '\0';
        return cfg_load(c, p, err, errlen);
}

START_TEST(test_defaults)
{
        struct cfg c;
        char err[512];

        cfg_defaults(&c);
        ck_assert_ptr_null(c.path);
        ck_assert_ptr_null(c.api_url);
        ck_assert_ptr_null(c.api_key_file);
        ck_assert_ptr_null(c.api_key);
        ck_assert_ptr_null(c.spool_dir);
        ck_assert(c.timeout == 10);
        ck_assert_int_eq(c.compression, CFG_COMPRESSION_GZIP);
        ck_assert_uint_eq(c.max_in_flight, 4);
        ck_assert(c.stop_timeout == 30);
        ck_assert(c.backoff_initial == 0.5);
        ck_assert(c.backoff_max == 60);
        ck_assert(c.retry_after_max == 300);
        ck_assert_uint_eq(c.batch_size, 20);
        ck_assert(c.flush_interval == 5.0);
        ck_assert_uint_eq(c.max_batch_bytes, 1048576);
        ck_assert_uint_eq(c.max_memory, 64 * 1048576);
        ck_assert_uint_eq(c.max_spool, 1024 * 1048576);
        ck_assert_int_eq(c.when_full, CFG_DROP_NEWEST);
        ck_assert_str_eq(c.events_socket, "/run/segopsd/events.sock");
        ck_assert_str_eq(c.control_socket, "/run/segopsd/segopsd.sock");
        ck_assert_uint_eq(c.socket_mode, 0660);
        ck_assert_uint_eq(c.max_message_bytes, 65536);
        ck_assert_uint_eq(c.max_connections, 256);
        ck_assert_uint_eq(c.max_reply_bytes, 1048576);
        ck_assert(c.idle_timeout == 300);
        ck_assert_uint_eq(c.dgram_burst, 256);
        ck_assert_int_eq(c.log_level, CFG_LOG_INFO);
        ck_assert_uint_eq(c.log_rate, 10);

        /* The only thing the defaults lack is somewhere to send to. */
        ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_msg(strstr(err, "api_url is not set"), "%s", err);
        c.api_url = (char *)"stdout";
        ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), 0);
        c.api_url = NULL;
        cfg_free(&c);
        cfg_free(&c); /* idempotent */
        cfg_free(NULL);
}
END_TEST

START_TEST(test_full_file)
{
        struct cfg c;
        char err[512];
        int r;

        r = load(&c,
                 "; a comment\n"
                 "# another\n"
                 "[upstream]\n"
                 "api_url = https://segops.example.com/  ; trailing / goes\n"
                 "api_key_file = /etc/segopsd/api_key\n"
                 "user_context_command = /usr/bin/who-am-i --json\n"
                 "ca_file = /etc/ssl/ca.pem\n"
                 "timeout = 2.5\n"
                 "compression = none\n"
                 "max_in_flight = 64\n"
                 "stop_timeout = 0\n"
                 "backoff_initial = 0.25\n"
                 "backoff_max = 120\n"
                 "retry_after_max = 600\n"
                 "\n"
                 "[batch]\n"
                 "batch_size = 500\n"
                 "flush_interval = 0.1\n"
                 "max_batch_bytes = 512K\n"
                 "[buffer]\n"
                 "max_memory = 1G\n"
                 "spool_dir = /var/lib/segopsd\n"
                 "max_spool = 2G\n"
                 "when_full = drop_oldest\n"
                 "[listen]\n"
                 "events_socket = /tmp/e.sock\n"
                 "control_socket = /tmp/c.sock\n"
                 "socket_mode = 0600\n"
                 "max_message_bytes = 1024\n"
                 "max_connections = 65536\n"
                 "max_reply_bytes = 2M\n"
                 "idle_timeout = 0\n"
                 "dgram_burst = 4096\n"
                 "[log]\n"
                 "level = debug\n"
                 "rate = 0\n",
                 err, sizeof(err));
        ck_assert_msg(r == 0, "r=%d err=%s", r, err);
        ck_assert_str_eq(c.path, tpath("t.conf"));
        ck_assert_str_eq(c.api_url, "https://segops.example.com");
        ck_assert_str_eq(c.api_key_file, "/etc/segopsd/api_key");
        ck_assert_ptr_null(c.api_key);
        ck_assert_str_eq(c.user_context_command, "/usr/bin/who-am-i --json");
        ck_assert_str_eq(c.ca_file, "/etc/ssl/ca.pem");
        ck_assert(c.timeout == 2.5);
        ck_assert_int_eq(c.compression, CFG_COMPRESSION_NONE);
        ck_assert_uint_eq(c.max_in_flight, 64);
        ck_assert(c.stop_timeout == 0);
        ck_assert(c.backoff_initial == 0.25);
        ck_assert(c.backoff_max == 120);
        ck_assert(c.retry_after_max == 600);
        ck_assert_uint_eq(c.batch_size, 500);
        ck_assert(c.flush_interval == 0.1);
        ck_assert_uint_eq(c.max_batch_bytes, 512 * 1024);
        ck_assert_uint_eq(c.max_memory, (size_t)1 << 30);
        ck_assert_str_eq(c.spool_dir, "/var/lib/segopsd");
        ck_assert_uint_eq(c.max_spool, (size_t)2 << 30);
        ck_assert_int_eq(c.when_full, CFG_DROP_OLDEST);
        ck_assert_str_eq(c.events_socket, "/tmp/e.sock");
        ck_assert_str_eq(c.control_socket, "/tmp/c.sock");
        ck_assert_uint_eq(c.socket_mode, 0600);
        ck_assert_uint_eq(c.max_message_bytes, 1024);
        ck_assert_uint_eq(c.max_connections, 65536);
        ck_assert_uint_eq(c.max_reply_bytes, 2 * 1048576);
        ck_assert(c.idle_timeout == 0);
        ck_assert_uint_eq(c.dgram_burst, 4096);
        ck_assert_int_eq(c.log_level, CFG_LOG_DEBUG);
        ck_assert_uint_eq(c.log_rate, 0);
        ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), 0);

        /* Loading again over a loaded config replaces its strings. */
        r = cfg_load(&c,
                     write_file("u.conf", "[upstream]\napi_url = stdout\n"
                                          "ca_file =\n[buffer]\nspool_dir =\n"),
                     err, sizeof(err));
        ck_assert_msg(r == 0, "%s", err);
        ck_assert_str_eq(c.api_url, "stdout");
        ck_assert_ptr_null(c.ca_file); /* empty = unset */
        ck_assert_ptr_null(c.spool_dir);
        ck_assert_str_eq(c.api_key_file, "/etc/segopsd/api_key");
        ck_assert_str_eq(c.path, tpath("u.conf"));
        cfg_free(&c);
        unlink(tpath("t.conf"));
        unlink(tpath("u.conf"));
}
END_TEST

static const struct bad_value {
        const char *section, *key, *value;
} bad_values[] = {
        { "upstream", "api_url", "ftp://example.com" },
        { "upstream", "api_url", "https://" },
        { "upstream", "api_url", "example.com" },
        { "upstream", "api_url", "http://a b" },
        { "upstream", "timeout", "0" },
        { "upstream", "timeout", "-1" },
        { "upstream", "timeout", "abc" },
        { "upstream", "timeout", "10s" },
        { "upstream", "timeout", "nan" },
        { "upstream", "timeout", "inf" },
        { "upstream", "timeout", "1e999" },
        { "upstream", "timeout", "0x10" },
        { "upstream", "timeout", "3601" },
        { "upstream", "timeout", "" },
        { "upstream", "compression", "zip" },
        { "upstream", "compression", "" },
        { "upstream", "max_in_flight", "0" },
        { "upstream", "max_in_flight", "65" },
        { "upstream", "max_in_flight", "-1" },
        { "upstream", "max_in_flight", "4x" },
        { "upstream", "max_in_flight", "+4" },
        { "upstream", "max_in_flight", "99999999999999999999999" },
        { "upstream", "stop_timeout", "-1" },
        { "upstream", "backoff_initial", "0" },
        { "upstream", "backoff_max", "abc" },
        { "upstream", "retry_after_max", "-5" },
        { "batch", "batch_size", "0" },
        { "batch", "batch_size", "501" },
        { "batch", "batch_size", "20.5" },
        { "batch", "flush_interval", "0" },
        { "batch", "flush_interval", "3601" },
        { "batch", "flush_interval", "5,0" },
        { "batch", "max_batch_bytes", "1023" },
        { "batch", "max_batch_bytes", "2M" },
        { "batch", "max_batch_bytes", "1X" },
        { "buffer", "max_memory", "512K" },
        { "buffer", "max_memory", "10X" },
        { "buffer", "max_memory", "99999999999G" },
        { "buffer", "max_spool", "1K" },
        { "buffer", "when_full", "drop" },
        { "listen", "events_socket",
          "/run/a-very-long-directory-name-that-goes-on-and-on/"
          "and-on-and-on-and-on-and-on-and-on-and-on/and-more/events.sock" },
        { "listen", "control_socket",
          "/run/a-very-long-directory-name-that-goes-on-and-on/"
          "and-on-and-on-and-on-and-on-and-on-and-on/and-more/control.sock" },
        { "listen", "socket_mode", "0888" },
        { "listen", "socket_mode", "01000" },
        { "listen", "socket_mode", "rw" },
        { "listen", "socket_mode", "-660" },
        { "listen", "socket_mode", "0x1ff" },
        { "listen", "max_message_bytes", "0" },
        { "listen", "max_message_bytes", "2M" },
        { "listen", "max_connections", "0" },
        { "listen", "max_connections", "65537" },
        { "listen", "max_reply_bytes", "1" },
        { "listen", "idle_timeout", "-1" },
        { "listen", "dgram_burst", "0" },
        { "listen", "dgram_burst", "4097" },
        { "log", "level", "verbose" },
        { "log", "rate", "-1" },
        { "log", "rate", "1000001" },
};

START_TEST(test_bad_values)
{
        size_t i;

        for (i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
                const struct bad_value *b = &bad_values[i];
                char content[512], err[1024], want[512], got[512];
                struct cfg c;
                int r;

                /* The bad key sits on line 5, after a valid one. */
                snprintf(content, sizeof(content), "; line 1\n[%s]\n\n; line 4\n%s = %s\n",
                         b->section, b->key, b->value);
                r = load(&c, content, err, sizeof(err));
                ck_assert_msg(r == -EINVAL, "%s = '%s': r=%d err=%s", b->key, b->value, r, err);
                snprintf(want, sizeof(want), "%s:5: [%s] %s: ", tpath("t.conf"), b->section,
                         b->key);
                ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "want prefix '%s', got '%s'",
                              want, err);
                snprintf(got, sizeof(got), "(got '%.60s", b->value);
                ck_assert_msg(strstr(err, got), "no '%s' in '%s'", got, err);
                /* A failed load leaves the defaults alone. */
                ck_assert_uint_eq(c.batch_size, 20);
                ck_assert_ptr_null(c.path);
                cfg_free(&c);
        }
        unlink(tpath("t.conf"));
}
END_TEST

static void expect_error(const char *content, const char *want_suffix)
{
        char err[1024], want[1024];
        struct cfg c;
        int r;

        r = load(&c, content, err, sizeof(err));
        ck_assert_msg(r == -EINVAL, "r=%d for:\n%s", r, content);
        snprintf(want, sizeof(want), "%s:%s", tpath("t.conf"), want_suffix);
        ck_assert_msg(strcmp(err, want) == 0, "want '%s'\n got '%s'", want, err);
        cfg_free(&c);
}

START_TEST(test_unknown_and_duplicate)
{
        expect_error("[upstream]\napi_url = stdout\n[batch]\nbatchsize = 2\n",
                     "4: [batch] unknown key 'batchsize'");
        expect_error("[upstream]\napi_url = stdout\n[bacth]\nbatch_size = 2\n",
                     "3: unknown section [bacth]");
        /* A section with no keys is still checked. */
        expect_error("[upstream]\napi_url = stdout\n[extra]\n", "3: unknown section [extra]");
        /* A key pasted where a name goes is a secret too. */
        expect_error("[upstream]\napi_url = stdout\nsk_live_SECRETabcdef123 = 1\n",
                     "3: [upstream] unknown key '(not shown: it looks like an API key)'");
        expect_error("[upstream]\napi_url = stdout\n[pk_live_SECRETabcdef123]\n",
                     "3: unknown section [(not shown: it looks like an API key)]");
        expect_error("api_url = stdout\n", "1: key 'api_url' is outside any section");
        expect_error("[upstream]\ntimeout = 5\ncompression = none\n"
                     "timeout = 6\n",
                     "4: [upstream] timeout: set more than once (first on "
                     "line 2) (got '6')");
        /* The same section twice is fine, the same key in it is not. */
        expect_error("[batch]\nbatch_size = 5\n[log]\nrate = 1\n[batch]\n"
                     "batch_size = 6\n",
                     "6: [batch] batch_size: set more than once (first on "
                     "line 2) (got '6')");
        expect_error("[upstream]\nca_file = /a\n   /b\n",
                     "3: [upstream] ca_file: an indented line continues the "
                     "value from line 2; remove the indentation (got '/b')");
        expect_error("[upstream]\ntimeout 5\n",
                     "2: syntax error: expected '[section]', 'key = value' "
                     "or a comment");
        expect_error("[upstream\ntimeout = 5\n",
                     "1: syntax error: expected '[section]', 'key = value' "
                     "or a comment");

        {
                char content[600];

                memset(content, 'x', sizeof(content));
                memcpy(content, "[upstream]\nca_file = /", 22);
                memcpy(content + sizeof(content) - 11, "\ntimeout 5\n", 11);
                content[sizeof(content) - 1] = '\0';
                expect_error(content, "2: line is longer than 197 characters "
                                      "or contains a NUL byte");
        }
        unlink(tpath("t.conf"));
}
END_TEST

START_TEST(test_file_errors)
{
        char err[1024], want[1024];
        struct cfg c;
        const char *p = tpath("missing.conf");
        int r;

        cfg_defaults(&c);
        r = cfg_load(&c, p, err, sizeof(err));
        ck_assert_int_eq(r, -ENOENT);
        snprintf(want, sizeof(want), "%s: cannot open: %s", p, strerror(ENOENT));
        ck_assert_str_eq(err, want);

        r = cfg_load(&c, tmpdir, err, sizeof(err));
        ck_assert_int_eq(r, -EINVAL);
        snprintf(want, sizeof(want), "%s: not a regular file", tmpdir);
        ck_assert_str_eq(err, want);

        /* NULLs are refused, and a NULL err buffer is fine. */
        ck_assert_int_eq(cfg_load(NULL, p, err, sizeof(err)), -EINVAL);
        ck_assert_int_eq(cfg_load(&c, NULL, NULL, 0), -EINVAL);
        ck_assert_int_eq(cfg_load(&c, p, NULL, 0), -ENOENT);
        cfg_free(&c);
}
END_TEST

START_TEST(test_sizes)
{
        size_t n;

        ck_assert_int_eq(cfg_parse_size("64M", &n), 0);
        ck_assert_uint_eq(n, (size_t)64 << 20);
        ck_assert_int_eq(cfg_parse_size("1G", &n), 0);
        ck_assert_uint_eq(n, (size_t)1 << 30);
        ck_assert_int_eq(cfg_parse_size("512K", &n), 0);
        ck_assert_uint_eq(n, 512 * 1024);
        ck_assert_int_eq(cfg_parse_size("100", &n), 0);
        ck_assert_uint_eq(n, 100);
        ck_assert_int_eq(cfg_parse_size("0", &n), 0);
        ck_assert_uint_eq(n, 0);
        ck_assert_int_eq(cfg_parse_size("100B", &n), 0);
        ck_assert_uint_eq(n, 100);
        ck_assert_int_eq(cfg_parse_size("64MB", &n), 0);
        ck_assert_uint_eq(n, (size_t)64 << 20);
        ck_assert_int_eq(cfg_parse_size("64MiB", &n), 0);
        ck_assert_uint_eq(n, (size_t)64 << 20);
        ck_assert_int_eq(cfg_parse_size("2k", &n), 0);
        ck_assert_uint_eq(n, 2048);

        /* Failures leave *ret alone. */
        n = 7;
        ck_assert_int_eq(cfg_parse_size("10X", &n), -EINVAL);
        ck_assert_int_eq(cfg_parse_size("", &n), -EINVAL);
        ck_assert_int_eq(cfg_parse_size("M", &n), -EINVAL);
        ck_assert_int_eq(cfg_parse_size(" 1M", &n), -EINVAL);
        ck_assert_int_eq(cfg_parse_size("-1", &n), -EINVAL);
        ck_assert_int_eq(cfg_parse_size("+1", &n), -EINVAL);
        ck_assert_int_eq(cfg_parse_size("1.5M", &n), -EINVAL);
        ck_assert_int_eq(cfg_parse_size("1Mi", &n), -EINVAL);
        ck_assert_int_eq(cfg_parse_size("1iB", &n), -EINVAL);
        ck_assert_int_eq(cfg_parse_size("1MBB", &n), -EINVAL);
        ck_assert_int_eq(cfg_parse_size("1T", &n), -EINVAL);
        ck_assert_int_eq(cfg_parse_size("18446744073709551616", &n), -ERANGE);
        ck_assert_int_eq(cfg_parse_size("17179869184G", &n), -ERANGE);
        ck_assert_int_eq(cfg_parse_size("18014398509481984K", &n), -ERANGE);
        ck_assert_uint_eq(n, 7);
        ck_assert_int_eq(cfg_parse_size(NULL, &n), -EINVAL);
        ck_assert_int_eq(cfg_parse_size("1", NULL), -EINVAL);
        if (SIZE_MAX == UINT64_MAX) {
                ck_assert_int_eq(cfg_parse_size("18446744073709551615", &n), 0);
                ck_assert_uint_eq(n, SIZE_MAX);
        }
}
END_TEST

START_TEST(test_socket_mode)
{
        static const struct {
                const char *text;
                unsigned mode;
        } ok[] = {
                { "0660", 0660 }, { "600", 0600 }, { "0", 0 }, { "0777", 0777 }, { "0007", 07 },
        };
        char content[128], err[512];
        struct cfg c;
        size_t i;

        for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                snprintf(content, sizeof(content), "[listen]\nsocket_mode = %s\n", ok[i].text);
                ck_assert_msg(load(&c, content, err, sizeof(err)) == 0, "%s", err);
                ck_assert_uint_eq(c.socket_mode, ok[i].mode);
                cfg_free(&c);
        }
        unlink(tpath("t.conf"));
}
END_TEST

START_TEST(test_validate)
{
        struct cfg c;
        char err[512];

        cfg_defaults(&c);
        c.api_url = (char *)"stdout";
        ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), 0);

        c.max_memory = 1048576; /* twice max_batch_bytes is 2M */
        ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_msg(strstr(err, "max_memory must be at least twice"), "%s", err);
        c.max_batch_bytes = 512 * 1024;
        ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), 0);

        c.backoff_initial = 61;
        ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_msg(strstr(err, "backoff_initial must not exceed "
                                  "backoff_max"),
                      "%s", err);
        c.backoff_initial = 60;
        ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), 0);

        c.max_message_bytes = 1048576;
        ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_msg(strstr(err, "max_message_bytes must not exceed"), "%s", err);
        c.max_message_bytes = 65536;

        c.control_socket = c.events_socket;
        ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_msg(strstr(err, "must differ"), "%s", err);
        c.control_socket = NULL;
        ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_msg(strstr(err, "control_socket is not set"), "%s", err);

        ck_assert_int_eq(cfg_validate(NULL, err, sizeof(err)), -EINVAL);
        c.api_url = NULL;
        cfg_free(&c);
}
END_TEST

/* A conflict between two keys names the line of the one set later. */
START_TEST(test_conflict_names_the_line)
{
        static const struct {
                const char *content, *want;
        } cases[] = {
                { "[upstream]\napi_url = stdout\nbackoff_max = 10\n\nbackoff_initial = 20\n",
                  ":5: [upstream] backoff_initial must not exceed" },
                { "[batch]\nmax_batch_bytes = 64K\n[upstream]\napi_url = stdout\n"
                  "[listen]\nmax_message_bytes = 128K\n",
                  ":6: [listen] max_message_bytes must not exceed" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char err[1024], want[1024];
                struct cfg c;

                ck_assert_msg(load(&c, cases[i].content, err, sizeof(err)) == 0, "%s", err);
                ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), -EINVAL);
                snprintf(want, sizeof(want), "%s%s", tpath("t.conf"), cases[i].want);
                ck_assert_msg(strstr(err, want), "%s", err);
                cfg_free(&c);
        }
}
END_TEST

/* Load content, then (if that worked) look up the key; returns the first
 * error text in err, or "" if both succeeded. */
static void load_and_key(const char *content, char *err, size_t errlen)
{
        char *key = NULL;
        struct cfg c;

        if (load(&c, content, err, errlen) == 0) {
                err[0] = '\0';
                if (apikey_load(&c, &key, err, errlen) == 0)
                        err[0] = '\0';
                free(key);
        }
        cfg_free(&c);
}

START_TEST(test_secret_never_shown)
{
        char long_key[700], long_line[400], wrong_prefix[64], with_space[64];
        char content[1200], err[2048];
        const char *contents[24];
        size_t n = 0, i;
        char keyfile[TPATH_LEN];

        memset(long_key, 'k', sizeof(long_key));
        memcpy(long_key, SECRET, strlen(SECRET));
        long_key[sizeof(long_key) - 1] = '\0';
        memset(long_line, 'k', sizeof(long_line));
        memcpy(long_line, "[upstream]\napi_key = " SECRET, strlen("[upstream]\napi_key = " SECRET));
        long_line[sizeof(long_line) - 1] = '\0';
        snprintf(wrong_prefix, sizeof(wrong_prefix), "xk_%s", SECRET_CORE);
        snprintf(with_space, sizeof(with_space), "%s tail", SECRET);

        contents[n++] = "[upstream]\napi_key = " SECRET "\napi_key = " SECRET "\n";
        contents[n++] = "[upstream]\napi_key = " SECRET "\n  " SECRET "\n";
        contents[n++] = "[batch]\napi_key = " SECRET "\n";
        contents[n++] = "[bogus]\napi_key = " SECRET "\n";
        contents[n++] = "api_key = " SECRET "\n";
        contents[n++] = "[upstream]\napi_key " SECRET "\n";
        contents[n++] = "[upstream]\ntimeout = " SECRET "\n";
        contents[n++] = "[upstream]\napi_url = " SECRET "\n";
        contents[n++] = "[upstream]\ncompression = " SECRET "\n";
        contents[n++] = "[listen]\nsocket_mode = " SECRET "\n";
        contents[n++] = "[buffer]\nmax_memory = " SECRET "\n";
        contents[n++] = long_line;
        /* pasted into api_key_file: shown redacted, not as a file name */
        contents[n++] = "[upstream]\napi_url = stdout\napi_key_file = " SECRET "\n";

        for (i = 0; i < n; i++) {
                load_and_key(contents[i], err, sizeof(err));
                ck_assert_msg(err[0] != '\0', "no error for case %zu", i);
                ck_assert_msg(!strstr(err, SECRET_CORE), "case %zu leaks the key: %s", i, err);
        }

        /* Bad keys, inline and from a file. */
        {
                const char *bad[] = { wrong_prefix, with_space, long_key };

                snprintf(keyfile, sizeof(keyfile), "%s", tpath("bad_key"));
                for (i = 0; i < 3; i++) {
                        snprintf(content, sizeof(content),
                                 "[upstream]\napi_url = stdout\n"
                                 "api_key = %s\n",
                                 bad[i]);
                        load_and_key(content, err, sizeof(err));
                        /* the long key is refused as a long line */
                        ck_assert_msg(strstr(err, i < 2 ? ":3: [upstream] api_key: "
                                                        : ":3: line is longer"),
                                      "%s", err);
                        ck_assert_msg(!strstr(err, SECRET_CORE), "inline %zu leaks: %s", i, err);

                        write_file("bad_key", bad[i]);
                        snprintf(content, sizeof(content),
                                 "[upstream]\napi_url = stdout\n"
                                 "api_key_file = %s\n",
                                 keyfile);
                        load_and_key(content, err, sizeof(err));
                        ck_assert_msg(strstr(err, keyfile), "%s", err);
                        ck_assert_msg(!strstr(err, SECRET_CORE), "file %zu leaks: %s", i, err);
                }
                unlink(keyfile);
        }
        unlink(tpath("t.conf"));
}
END_TEST

START_TEST(test_key_lookup_order)
{
        char content[1024], err[1024];
        char credir[TPATH_LEN], keyfile[TPATH_LEN];
        char *key = NULL;
        struct cfg c;

        snprintf(credir, sizeof(credir), "%s", tpath("creds"));
        ck_assert_int_eq(mkdir(credir, 0700), 0);
        write_file("creds/api_key", "sk_fromcredentials1\n");
        snprintf(keyfile, sizeof(keyfile), "%s", write_file("keyfile", "pk_fromkeyfile2 \n\n\t"));
        snprintf(content, sizeof(content),
                 "[upstream]\napi_url = https://x.example\n"
                 "api_key_file = %s\napi_key = sk_inlinekey3\n",
                 keyfile);
        ck_assert_msg(load(&c, content, err, sizeof(err)) == 0, "%s", err);
        ck_assert_uint_eq(cfg_key_line(&c, "upstream", "api_key"), 4);

        /* 1: the systemd credential wins */
        ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", credir, 1), 0);
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
        ck_assert_int_eq(unsetenv("CREDENTIALS_DIRECTORY"), 0);
        ck_assert_int_eq(rmdir(credir), 0);

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
                ck_assert_msg(strstr(err, "chmod o-rwx"), "%s", err);
                ck_assert_msg(!strstr(err, "openkey"), "%s", err);
                ck_assert_int_eq(chmod(p, 0640), 0);
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

        /* Empty key file. */
        free(c.api_key_file);
        c.api_key_file = strdup(write_file("empty_key", "\n"));
        ck_assert_int_eq(apikey_load(&c, &key, err, sizeof(err)), -EINVAL);
        ck_assert_msg(strstr(err, "API key is empty"), "%s", err);
        unlink(tpath("empty_key"));

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

        /* A short buffer truncates, never overflows. */
        memset(out, 'Z', sizeof(out));
        apikey_redact("sk_abcdefghijkl1234", out, 5);
        ck_assert_uint_eq(strlen(out), 4);
        ck_assert_int_eq(out[5], 'Z');
        apikey_redact("sk_abcdefghijkl1234", NULL, 0);
}
END_TEST

static Suite *config_suite(void)
{
        Suite *s = suite_create("config");
        TCase *tc;

#define CASE(name)                                                                                 \
        tc = tcase_create(#name);                                                                  \
        tcase_add_test(tc, name);                                                                  \
        suite_add_tcase(s, tc)

        CASE(test_defaults);
        CASE(test_full_file);
        CASE(test_bad_values);
        CASE(test_unknown_and_duplicate);
        CASE(test_file_errors);
        CASE(test_sizes);
        CASE(test_socket_mode);
        CASE(test_validate);
        CASE(test_conflict_names_the_line);
        CASE(test_secret_never_shown);
        CASE(test_key_lookup_order);
        CASE(test_bad_key);
        CASE(test_unreadable_key_file);
        CASE(test_redact);
#undef CASE
        return s;
}

/* Remove what a failed test may have left behind: files one level deep
 * (the tests create at most one subdirectory). */
static void remove_tree(const char *dir, int depth)
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
                snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
                if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode) && depth > 0)
                        remove_tree(p, depth - 1);
                else
                        unlink(p);
        }
        closedir(d);
        rmdir(dir);
}

int main(void)
{
        const char *base = getenv("TMPDIR");
        SRunner *sr;
        int failed;

        snprintf(tmpdir, sizeof(tmpdir), "%s/test-config.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
                perror("mkdtemp");
                return 1;
        }
        unsetenv("CREDENTIALS_DIRECTORY");
        sr = srunner_create(config_suite());
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        remove_tree(tmpdir, 1);
        return failed == 0 ? 0 : 1;
}
