/* report.h - segopsctl's reading of a stats reply: status and health.
 *
 * Pure functions from the parsed reply of the stats op (jansson) to what
 * segopsctl shows, so that every upstream state is unit-tested without a
 * daemon (tests/unit/test-status.c, test-health.c). A field an older
 * segopsd does not send is left out of the report, never guessed: health
 * then works from upstream.state, dropped and spool.state alone.
 */
#ifndef SEGOPSCTL_REPORT_H
#define SEGOPSCTL_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* ---- fmt.c: numbers for people ---- */

#define CTL_FMT_LEN 32 /* room for any of the strings below */

/* 45,012 */
const char *ctl_fmt_count(uint64_t n, char *buf, size_t len);
/* A count from a JSON number as a uint64_t: 0 for negatives and NaN, the
 * largest for what does not fit (a cast would be undefined). */
static inline uint64_t ctl_count_of(double v)
{
        return v > 0 ? (v < 18446744073709551616.0 ? (uint64_t)v : UINT64_MAX) : 0;
}
/* A rate or a quantity in short form: 0.4, 12, 980, 1.2k, 45k, 3.4M. */
const char *ctl_fmt_short(double v, char *buf, size_t len);
/* 512 B, 1.2 KiB, 3.4 MiB, 2.0 GiB */
const char *ctl_fmt_bytes(uint64_t n, char *buf, size_t len);
/* An age or a duration: 0.4s, 45s, 2m13s, 3h02m, 2d04h. Negative: 0s. */
const char *ctl_fmt_age(double seconds, char *buf, size_t len);

/* The number at key in obj (integer or real): true and *ret set, or
 * false when obj is not an object or has no number there. */
bool ctl_json_num(json_t *obj, const char *key, double *ret);

/* ---- health.c ---- */

/* segopsctl health's exit codes beyond ctl.h's (3 and 4 keep their
 * meaning there: cannot connect, no valid reply). The contract with
 * monitoring scripts: segopsctl(1), segopsctl help health. */
enum {
        CTL_HEALTH_OK = 0,
        CTL_HEALTH_FAILING = 5,  /* upstream failing longer than the threshold */
        CTL_HEALTH_ACT = 6,      /* the operator must act: auth, TLS, redirect, pk_ mint */
        CTL_HEALTH_DROPPING = 7, /* events dropped in the last minute */
        CTL_HEALTH_SPOOL = 8,    /* the spool is in trouble */
};

#define CTL_HEALTH_DEFAULT_MAX_FAILING 60.0 /* seconds */

struct ctl_health {
        int code;         /* one of CTL_HEALTH_* */
        char reason[320]; /* one line, no newline: "healthy: ..." or why not */
};

/* Judge a stats reply. max_failing_s: how long the upstream may fail
 * (retrying, throttled, send_error) before that is unhealthy. When
 * several problems apply the most severe wins: 6, then 8, 7, 5. */
void ctl_health_judge(json_t *stats, double max_failing_s, struct ctl_health *ret);

/* ---- status.c ---- */

/* The status report of a stats reply, as JSON: the data segopsctl
 * status shows (version, uptime, upstream, rates, held, non-zero drops
 * and rejections, spool, session, clients that reported drops, health
 * with the default threshold). A new reference, or NULL without memory. */
json_t *ctl_status_json(json_t *stats);

/* Print such a report for people, on one screen. Returns 0 or -EIO. */
int ctl_status_print(json_t *status, FILE *f);

/* The upstream's state in a few words ("retrying for 2m13s, next try in
 * 4s"), from the upstream object of a stats reply. */
void ctl_upstream_summary(json_t *upstream, char *buf, size_t len);

#endif
