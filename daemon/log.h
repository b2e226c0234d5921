/* log.h - the one logging front end of segopsd.
 *
 * Under systemd (stderr is the journal stream) lines carry sd-daemon
 * "<N>" priority prefixes that journald understands; otherwise they are
 * plain "segopsd: level: text" lines on stderr. Modules return errors;
 * the caller that decides what to do logs them, once.
 */
#ifndef SEGOPSD_LOG_H
#define SEGOPSD_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

#include "config.h"

void log_init(enum cfg_log_level level, unsigned rate_per_10s);
void log_set_level(enum cfg_log_level level);
void log_set_rate(unsigned rate_per_10s);

void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like log_msg, but at most rate_per_10s lines per key in each fixed
 * 10 s window; the rest are counted (log_suppressed) and summarised in
 * one line by the first call for that key after its window ends (a key
 * that falls silent is never summarised in the log, only in stats).
 * The key must be a string with static storage (a literal). */
void log_limited(int prio, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Lines suppressed by rate limiting since start (for stats). */
uint64_t log_suppressed(void);

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* Copy at most n bytes of untrusted text into out as a printable ASCII
 * excerpt: proto_printable()'s PROTO_PRINTABLE_ASCII form (control
 * characters, DEL, '\\' and bytes from 0x80 up become \xHH), cut where it
 * no longer fits. */
void log_excerpt(const char *s, size_t n, char *out, size_t outlen);

/* A delay for a log line: "0.3 s", "12 s", "2m05s", "1h02m". Returns
 * out. */
const char *log_duration(uint64_t ms, char *out, size_t outlen);

#endif
