/* log.c - formats, filters and rate-limits segopsd's log lines.
 *
 * One writer (stderr), two formats: when stderr is the journal stream
 * (JOURNAL_STREAM names its device and inode) each line starts with
 * "<prio>" so the journal keeps the priority; otherwise a readable
 * "segopsd: warning: " prefix. Rate limiting is per call-site key in
 * fixed 10 s windows, so a flood of bad input costs a bounded number of
 * lines.
 */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "proto.h"

#define LOG_KEYS_MAX 64
#define LOG_WINDOW_S 10

struct log_key {
        const char *key;
        int64_t window_start;
        unsigned count;
        uint64_t suppressed;
};

static int log_max_prio = LOG_INFO;
static unsigned log_rate = 10;
static bool log_journal;
static uint64_t log_suppressed_total;
static struct log_key log_keys[LOG_KEYS_MAX];

static int prio_of_level(enum cfg_log_level level)
{
        switch (level) {
        case CFG_LOG_ERR: return LOG_ERR;
        case CFG_LOG_WARN: return LOG_WARNING;
        case CFG_LOG_INFO: return LOG_INFO;
        case CFG_LOG_DEBUG: return LOG_DEBUG;
        }
        return LOG_INFO;
}

/* systemd sets JOURNAL_STREAM=DEV:INODE when it connects stderr to the
 * journal. A child started from such a service inherits the variable
 * with a stderr of its own (a pipe, a file): only a match says stderr
 * is still the journal stream (systemd.exec(5)). */
static bool stderr_is_journal(void)
{
        const char *v = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        int n = 0;

        if (!v || sscanf(v, "%llu:%llu%n", &dev, &ino, &n) != 2 || v[n] != '\0')
                return false;
        return fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
               (unsigned long long)st.st_ino == ino;
}

void log_init(enum cfg_log_level level, unsigned rate_per_10s)
{
        log_max_prio = prio_of_level(level);
        log_rate = rate_per_10s;
        log_journal = stderr_is_journal();
}

void log_set_level(enum cfg_log_level level)
{
        log_max_prio = prio_of_level(level);
}

void log_set_rate(unsigned rate_per_10s)
{
        log_rate = rate_per_10s;
}

static const char *prio_name(int prio)
{
        switch (prio) {
        case LOG_EMERG:
        case LOG_ALERT:
        case LOG_CRIT:
        case LOG_ERR: return "error";
        case LOG_WARNING: return "warning";
        case LOG_NOTICE: return "notice";
        case LOG_INFO: return "info";
        default: return "debug";
        }
}

static void log_write(int prio, const char *fmt, va_list ap)
{
        char msg[2048], line[2048 + 64];
        int off;

        if (log_journal)
                off = snprintf(line, sizeof(line), "<%d>", prio);
        else
                off = snprintf(line, sizeof(line), "segopsd: %s: ", prio_name(prio));
        if (off < 0)
                return;
        vsnprintf(msg, sizeof(msg), fmt, ap);
        /* Control characters as \xHH (proto_printable), so text from
         * clients (a user id, an upstream's body) can never start a line of
         * its own, nor forge one or its journal priority. */
        proto_printable(line + off, sizeof(line) - (size_t)off, msg, strlen(msg), 0);
        /* One write per line keeps lines whole when stderr is shared. */
        fprintf(stderr, "%s\n", line);
        fflush(stderr);
}

void log_msg(int prio, const char *fmt, ...)
{
        va_list ap;

        if (prio > log_max_prio)
                return;
        va_start(ap, fmt);
        log_write(prio, fmt, ap);
        va_end(ap);
}

static struct log_key *key_slot(const char *key)
{
        for (size_t i = 0; i < LOG_KEYS_MAX; i++) {
                if (log_keys[i].key == key)
                        return &log_keys[i];
                if (!log_keys[i].key) {
                        log_keys[i].key = key;
                        return &log_keys[i];
                }
        }
        return NULL;
}

void log_limited(int prio, const char *key, const char *fmt, ...)
{
        struct log_key *k;
        int64_t now_s;
        va_list ap;

        if (prio > log_max_prio)
                return;
        k = key_slot(key);
        if (k && log_rate > 0) {
                now_s = clock_mono_ms() / 1000;
                if (now_s - k->window_start >= LOG_WINDOW_S) {
                        if (k->suppressed)
                                log_msg(LOG_WARNING, "%llu more '%s' messages suppressed",
                                        (unsigned long long)k->suppressed, key);
                        k->window_start = now_s;
                        k->count = 0;
                        k->suppressed = 0;
                }
                if (k->count >= log_rate) {
                        k->suppressed++;
                        log_suppressed_total++;
                        return;
                }
                k->count++;
        }
        va_start(ap, fmt);
        log_write(prio, fmt, ap);
        va_end(ap);
}

uint64_t log_suppressed(void)
{
        return log_suppressed_total;
}

void log_excerpt(const char *s, size_t n, char *out, size_t outlen)
{
        proto_printable(out, outlen, s, n, PROTO_PRINTABLE_ASCII);
}

const char *log_duration(uint64_t ms, char *out, size_t outlen)
{
        uint64_t s = (ms + 500) / 1000;

        if (ms < 10000)
                snprintf(out, outlen, "%.1f s", (double)ms / 1000.0);
        else if (s < 120)
                snprintf(out, outlen, "%llu s", (unsigned long long)s);
        else if (s < 7200)
                snprintf(out, outlen, "%llum%02llus", (unsigned long long)(s / 60),
                         (unsigned long long)(s % 60));
        else
                snprintf(out, outlen, "%lluh%02llum", (unsigned long long)(s / 3600),
                         (unsigned long long)(s / 60 % 60));
        return out;
}
