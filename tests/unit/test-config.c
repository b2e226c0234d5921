/* test-config.c - unit tests for the configuration: daemon/config.c,
 * config-file.c and config-value.c (suite "config"; the key's own tests
 * are in test-apikey.c).
 *
 * Most cases write small INI files into a private mkdtemp directory and
 * check what cfg_load and cfg_validate make of them (and, for the secret,
 * apikey_load): the values, and above all the error text, which must
 * name file, line and key and must never contain an API key. The others
 * call the internal functions of config-internal.h directly: one value
 * through cfg_set_value, the key table, copying, the error-text helpers.
 */
#include "apikey.h"
#include "config-internal.h"
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config-fixture.h"

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
        ck_assert_uint_eq(c.reserved_connections, 16);
        ck_assert_uint_eq(c.max_reply_bytes, 65536);
        ck_assert(c.reply_timeout == 30);
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
                 "reserved_connections = 65535\n"
                 "max_reply_bytes = 2M\n"
                 "reply_timeout = 0\n"
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
        ck_assert_uint_eq(c.reserved_connections, 65535);
        ck_assert_uint_eq(c.max_reply_bytes, 2 * 1048576);
        ck_assert(c.reply_timeout == 0);
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
        { "listen", "reserved_connections", "65536" },
        { "listen", "max_reply_bytes", "1" },
        { "listen", "reply_timeout", "-1" },
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
        /* A refused api_url is shown without its userinfo and query. */
        expect_error("[upstream]\napi_url = https://u:pass word@h/x?k=SECRET\n",
                     "2: [upstream] api_url: must not contain spaces or control characters "
                     "(got 'https://h/x')");
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
        /* An indented key line is shown, but not its key (found by
         * fuzz-config; tests/fuzz/corpus/config/crash-indented-key). */
        expect_error("[upstream]\napi_url = stdout\n  ca_file = sk_live_SECRETabcdef123\n",
                     "3: [upstream] api_url: an indented line continues the value from line "
                     "2; remove the indentation (value not shown: it looks like an API key)");
        expect_error("[upstream]\napi_url = stdout\n\tapi_key=SECRETabcdef123\n",
                     "3: [upstream] api_url: an indented line continues the value from line "
                     "2; remove the indentation (value not shown: it looks like an API key)");
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

        c.reserved_connections = c.max_connections;
        ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_msg(strstr(err, "reserved_connections must be less than max_connections"), "%s",
                      err);
        c.reserved_connections = c.max_connections - 1;
        ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), 0);

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

/* ---- config-value.c: one value, through cfg_set_value ---- */

static const struct cfg_key *key(const char *section, const char *name)
{
        int i = cfg_key_find(section, name);

        ck_assert_msg(i >= 0, "no key [%s] %s", section, name);
        return &cfg_keys[i];
}

/* Each type's parser stores what the text means, in the key's field. */
START_TEST(test_set_value_stores)
{
        char msg[512];
        struct cfg c;

        cfg_defaults(&c);
        ck_assert_int_eq(cfg_set_value(&c, key("batch", "batch_size"), "7", msg, sizeof(msg)), 0);
        ck_assert_uint_eq(c.batch_size, 7);
        ck_assert_int_eq(cfg_set_value(&c, key("buffer", "max_memory"), "3MiB", msg, sizeof(msg)),
                         0);
        ck_assert_uint_eq(c.max_memory, 3 * 1048576);
        ck_assert_int_eq(cfg_set_value(&c, key("upstream", "timeout"), "2.5e0", msg, sizeof(msg)),
                         0);
        ck_assert(c.timeout == 2.5);
        ck_assert_int_eq(cfg_set_value(&c, key("listen", "socket_mode"), "0640", msg, sizeof(msg)),
                         0);
        ck_assert_uint_eq(c.socket_mode, 0640);
        ck_assert_int_eq(cfg_set_value(&c, key("log", "level"), "warn", msg, sizeof(msg)), 0);
        ck_assert_int_eq(c.log_level, CFG_LOG_WARN);
        ck_assert_int_eq(
                cfg_set_value(&c, key("buffer", "when_full"), "drop_oldest", msg, sizeof(msg)), 0);
        ck_assert_int_eq(c.when_full, CFG_DROP_OLDEST);
        ck_assert_int_eq(
                cfg_set_value(&c, key("upstream", "compression"), "none", msg, sizeof(msg)), 0);
        ck_assert_int_eq(c.compression, CFG_COMPRESSION_NONE);

        /* The URL loses its trailing slashes; an empty string unsets. */
        ck_assert_int_eq(cfg_set_value(&c, key("upstream", "api_url"), "http://h.example//", msg,
                                       sizeof(msg)),
                         0);
        ck_assert_str_eq(c.api_url, "http://h.example");
        ck_assert_int_eq(cfg_set_value(&c, key("upstream", "api_url"), "", msg, sizeof(msg)), 0);
        ck_assert_ptr_null(c.api_url);
        /* A default socket path is replaced (and not freed: it is static). */
        ck_assert_int_eq(
                cfg_set_value(&c, key("listen", "events_socket"), "/tmp/x.sock", msg, sizeof(msg)),
                0);
        ck_assert_str_eq(c.events_socket, "/tmp/x.sock");
        ck_assert_int_eq(cfg_set_value(&c, key("upstream", "api_key"), SECRET, msg, sizeof(msg)),
                         0);
        ck_assert_str_eq(c.api_key, SECRET);
        cfg_free(&c);
}
END_TEST

/* A refused value leaves the config as it was and says why, exactly. */
START_TEST(test_set_value_refuses)
{
        static const struct {
                const char *section, *name, *value, *want;
        } cases[] = {
                { "batch", "batch_size", "0",
                  "[batch] batch_size: must be a whole number from 1 to 500 (got '0')" },
                { "upstream", "timeout", "0",
                  "[upstream] timeout: must be a number of seconds greater than 0 and at most "
                  "3600 (got '0')" },
                { "upstream", "stop_timeout", "-1",
                  "[upstream] stop_timeout: must be a number of seconds from 0 to 3600 "
                  "(got '-1')" },
                { "buffer", "max_memory", "1K",
                  "[buffer] max_memory: must be at least 1M (got '1K')" },
                { "batch", "max_batch_bytes", "2M",
                  "[batch] max_batch_bytes: must be a size from 1K to 1M (got '2M')" },
                { "batch", "max_batch_bytes", "1KK",
                  "[batch] max_batch_bytes: must be a size: a whole number with an optional K, "
                  "M or G suffix (got '1KK')" },
                { "listen", "socket_mode", "0778",
                  "[listen] socket_mode: must be an octal file mode from 0 to 0777, e.g. 0660 "
                  "(got '0778')" },
                { "log", "level", "trace",
                  "[log] level: must be err, warn, info or debug (got 'trace')" },
                { "upstream", "api_url", "ftp://x",
                  "[upstream] api_url: must be \"stdout\" or a URL starting with https:// (or "
                  "http://) (got 'ftp://x')" },
                { "upstream", "api_url", "https://a\tb",
                  "[upstream] api_url: must not contain spaces or control characters "
                  "(got 'https://a?b')" },
                { "listen", "control_socket",
                  "/0123456789/0123456789/0123456789/0123456789/0123456789/0123456789/"
                  "0123456789/0123456789/0123456789/0123456789",
                  "[listen] control_socket: socket path is longer than 107 bytes (got "
                  "'/0123456789/0123456789/0123456789/0123456789/0123456789/0123456789/"
                  "0123456789/01...')" },
                { "upstream", "timeout", "pk_" SECRET_CORE,
                  "[upstream] timeout: must be a number of seconds greater than 0 and at most "
                  "3600 (value not shown: it looks like an API key)" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct cfg c, before;
                char msg[512];

                cfg_defaults(&c);
                memcpy(&before, &c, sizeof(c));
                ck_assert_int_eq(cfg_set_value(&c, key(cases[i].section, cases[i].name),
                                               cases[i].value, msg, sizeof(msg)),
                                 -EINVAL);
                ck_assert_str_eq(msg, cases[i].want);
                ck_assert_msg(memcmp(&c, &before, sizeof(c)) == 0, "case %zu changed c", i);
                cfg_free(&c);
        }
}
END_TEST

/* The message of a bad value: the secret is never quoted, nor anything
 * that looks like a key; the rest is bounded and printable. */
START_TEST(test_key_error)
{
        char msg[512], value[200];

        cfg_key_error(msg, sizeof(msg), key("upstream", "api_key"), SECRET, "bad %d", 1);
        ck_assert_str_eq(msg, "[upstream] api_key: bad 1 (value not shown)");
        cfg_key_error(msg, sizeof(msg), key("upstream", "ca_file"), SECRET, "bad");
        ck_assert_str_eq(msg, "[upstream] ca_file: bad (value not shown: it looks like an API "
                              "key)");
        cfg_key_error(msg, sizeof(msg), key("upstream", "ca_file"), "a\x01\x7f\xc3\xa9z", "bad");
        ck_assert_str_eq(msg, "[upstream] ca_file: bad (got 'a????z')");

        memset(value, 'v', sizeof(value));
        value[sizeof(value) - 1] = '\0';
        cfg_key_error(msg, sizeof(msg), key("upstream", "ca_file"), value, "bad");
        ck_assert_msg(strstr(msg, "(got 'vvvv"), "%s", msg);
        ck_assert_msg(strstr(msg, "v...')"), "%s", msg);
        ck_assert_uint_eq(strlen(msg), strlen("[upstream] ca_file: bad (got '...')") + 80);
}
END_TEST

/* ---- config.c: the table and the shared helpers ---- */

START_TEST(test_key_table)
{
        int i = cfg_key_find("listen", "socket_mode");

        ck_assert_int_ge(i, 0);
        ck_assert_str_eq(cfg_keys[i].section, "listen");
        ck_assert_str_eq(cfg_keys[i].name, "socket_mode");
        ck_assert_uint_eq(cfg_keys[i].off, offsetof(struct cfg, socket_mode));
        ck_assert_int_eq(cfg_key_find("batch", "socket_mode"), -1); /* wrong section */
        ck_assert_int_eq(cfg_key_find("listen", "socket"), -1);
        ck_assert_int_eq(cfg_key_find("", ""), -1);

        /* Sections are matched by length: the reader hands over "[x]"'s x
         * without a NUL. */
        ck_assert(cfg_known_section("upstream]", 8));
        ck_assert(cfg_known_section("log", 3));
        ck_assert(!cfg_known_section("upstream]", 9));
        ck_assert(!cfg_known_section("upstrea", 7));
        ck_assert(!cfg_known_section("", 0));
}
END_TEST

START_TEST(test_copy)
{
        struct cfg a, b;
        char err[512];

        ck_assert_msg(load(&a, "[upstream]\napi_url = stdout\napi_key = " SECRET "\n", err,
                           sizeof(err)) == 0,
                      "%s", err);
        ck_assert_int_eq(cfg_copy(&b, &a), 0);
        /* Equal values in strings of its own, including the defaults. */
        ck_assert_str_eq(b.api_url, "stdout");
        ck_assert_ptr_ne(b.api_url, a.api_url);
        ck_assert_str_eq(b.api_key, SECRET);
        ck_assert_ptr_ne(b.api_key, a.api_key);
        ck_assert_str_eq(b.events_socket, a.events_socket);
        ck_assert_ptr_ne(b.events_socket, a.events_socket);
        ck_assert_str_eq(b.path, a.path);
        ck_assert_ptr_null(b.ca_file);
        ck_assert_uint_eq(b.batch_size, a.batch_size);
        ck_assert_uint_eq(cfg_key_line(&b, "upstream", "api_key"), 3);
        cfg_free(&b);
        ck_assert_str_eq(a.api_key, SECRET); /* untouched by freeing the copy */
        cfg_free(&a);
        unlink(tpath("t.conf"));
}
END_TEST

START_TEST(test_error_text_helpers)
{
        char out[128], name[200];
        struct cfg c;

        /* cfg_at: where to fix a value */
        cfg_defaults(&c);
        ck_assert_str_eq(cfg_at(&c, 0, out, sizeof(out)), "(defaults)");
        ck_assert_str_eq(cfg_at(&c, 3, out, sizeof(out)), "(defaults):3");
        c.path = (char *)"/etc/x.conf";
        ck_assert_str_eq(cfg_at(&c, 0, out, sizeof(out)), "/etc/x.conf");
        ck_assert_str_eq(cfg_at(&c, 12, out, sizeof(out)), "/etc/x.conf:12");
        c.path = NULL;
        cfg_free(&c);

        /* cfg_printable: n bytes, not up to a NUL; bounded; '?' for the
         * non-printable */
        cfg_printable("abc]def", 3, out, sizeof(out));
        ck_assert_str_eq(out, "abc");
        cfg_printable("a\tb\n", 4, out, sizeof(out));
        ck_assert_str_eq(out, "a?b?");
        cfg_printable("", 0, out, sizeof(out));
        ck_assert_str_eq(out, "");
        memset(name, 'n', sizeof(name));
        cfg_printable(name, 80, out, sizeof(out));
        ck_assert_uint_eq(strlen(out), 80);
        cfg_printable(name, 81, out, sizeof(out));
        ck_assert_uint_eq(strlen(out), 83);
        ck_assert_str_eq(out + 80, "...");

        /* what counts as a key, and as visible */
        ck_assert(cfg_looks_like_key("sk_", 3));
        ck_assert(cfg_looks_like_key("pk_x", 4));
        ck_assert(!cfg_looks_like_key("sk_", 2));
        ck_assert(!cfg_looks_like_key("SK_x", 4));
        ck_assert(!cfg_looks_like_key(NULL, 0));
        ck_assert_uint_eq(cfg_span_visible("ab~!"), 4);
        ck_assert_uint_eq(cfg_span_visible("ab c"), 2);
        ck_assert_uint_eq(cfg_span_visible("\x7f"), 0);
        ck_assert_uint_eq(cfg_span_visible("\xc3\xa9"), 0);
        ck_assert_uint_eq(cfg_span_visible(""), 0);

        /* cfg_errf takes no buffer at all */
        cfg_errf(NULL, 0, "%s", "nothing");
        out[0] = 'x';
        cfg_errf(out, 0, "%s", "nothing");
        ck_assert_int_eq(out[0], 'x');
}
END_TEST

/* http:// with the key to a host that is not loopback is refused at
 * validation (no network: nothing here resolves or connects), unless
 * allow_insecure_http; loopback and https:// need nothing. */
START_TEST(test_clear_text_http)
{
        static const char *const refused[] = {
                "http://example.invalid",
                "http://example.invalid:80/",
                "http://10.0.0.1",
                "http://128.0.0.1",
                "http://127.0.0.1.example.invalid",
                "http://localhost.example.invalid",
                "http://localhost@example.invalid",
                "http://127.0.0.1:1@example.invalid/",
                "http://example.invalid\\@127.0.0.1/",
                /* curl ends the authority at / ? # only: the host is
                 * example.invalid, "127.0.0.1\" the user. */
                "http://127.0.0.1\\@example.invalid/",
                "http://localhost\\@example.invalid",
                "http://[::1]\\@example.invalid:80/",
                "http://a@b@127.0.0.1",
                "http://127.1",
                "http://[::2]",
                "http://[fe80::1%25lo]:80",
                "http://[::1",
        };
        static const char *const allowed[] = {
                "http://localhost",
                "http://LocalHost:8080",
                "http://localhost./",
                "http://127.0.0.1",
                "http://127.255.0.9:1/x?y#z",
                "http://u:p@127.0.0.1:1",
                "http://[::1]",
                "http://[::1]:8080/",
                "http://[::ffff:127.0.0.1]",
                "https://example.invalid",
                "stdout",
        };
        struct cfg c;
        char err[512];

        cfg_defaults(&c);
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
                c.api_url = (char *)refused[i];
                c.allow_insecure_http = false;
                ck_assert_msg(cfg_url_insecure(&c), "%s", refused[i]);
                ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), -EINVAL);
                ck_assert_msg(strstr(err, "api_url: http://") && strstr(err, "clear text") &&
                                      strstr(err, "allow_insecure_http = yes"),
                              "%s: %s", refused[i], err);
                c.allow_insecure_http = true;
                ck_assert_msg(cfg_validate(&c, err, sizeof(err)) == 0, "%s: %s", refused[i], err);
        }
        c.allow_insecure_http = false;
        for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
                c.api_url = (char *)allowed[i];
                ck_assert_msg(!cfg_url_insecure(&c), "%s", allowed[i]);
                ck_assert_msg(cfg_validate(&c, err, sizeof(err)) == 0, "%s: %s", allowed[i], err);
        }
        c.api_url = NULL;
        cfg_free(&c);
}
END_TEST

/* From the file: the error names the file and api_url's line; the key
 * takes yes/no words. */
START_TEST(test_clear_text_http_file)
{
        struct cfg c;
        char err[512];

        ck_assert_int_eq(
                load(&c, "[upstream]\n\napi_url = http://example.invalid\n", err, sizeof(err)), 0);
        ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_msg(strstr(err, "t.conf:3: [upstream] api_url: http:// to 'example.invalid'"),
                      "%s", err);
        cfg_free(&c);
        ck_assert_int_eq(load(&c,
                              "[upstream]\napi_url = http://example.invalid\n"
                              "allow_insecure_http = yes\n",
                              err, sizeof(err)),
                         0);
        ck_assert(c.allow_insecure_http);
        ck_assert_int_eq(cfg_validate(&c, err, sizeof(err)), 0);
        cfg_free(&c);
        ck_assert_int_eq(load(&c, "[upstream]\nallow_insecure_http = maybe\n", err, sizeof(err)),
                         -EINVAL);
        ck_assert_msg(strstr(err, "allow_insecure_http: must be yes or no"), "%s", err);
        cfg_free(&c);
        ck_assert_int_eq(load(&c, "[upstream]\nallow_insecure_http = off\n", err, sizeof(err)), 0);
        ck_assert(!c.allow_insecure_http);
        cfg_free(&c);
}
END_TEST

static Suite *config_suite(void)
{
        Suite *s = suite_create("config");

        ADD_CASE(s, test_defaults);
        ADD_CASE(s, test_full_file);
        ADD_CASE(s, test_bad_values);
        ADD_CASE(s, test_unknown_and_duplicate);
        ADD_CASE(s, test_file_errors);
        ADD_CASE(s, test_sizes);
        ADD_CASE(s, test_socket_mode);
        ADD_CASE(s, test_validate);
        ADD_CASE(s, test_conflict_names_the_line);
        ADD_CASE(s, test_secret_never_shown);
        ADD_CASE(s, test_set_value_stores);
        ADD_CASE(s, test_set_value_refuses);
        ADD_CASE(s, test_key_error);
        ADD_CASE(s, test_key_table);
        ADD_CASE(s, test_copy);
        ADD_CASE(s, test_error_text_helpers);
        ADD_CASE(s, test_clear_text_http);
        ADD_CASE(s, test_clear_text_http_file);
        return s;
}

int main(void)
{
        return run_in_tmpdir("test-config", config_suite());
}
