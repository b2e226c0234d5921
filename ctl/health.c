/* health.c - segopsctl health's verdict on a stats reply (issue 12).
 *
 * One pure function from the reply to an exit code and one line saying
 * why, so that the thresholds are the caller's (--max-failing) and every
 * row of the table below is unit-tested (tests/unit/test-health.c):
 *
 *   6  the operator must act: upstream auth_error, tls_error,
 *      redirected or no_key, or a pk_ session whose mint the upstream refused
 *      with 400/401/403 (a configuration error: key, signature, identity)
 *   8  the spool is in trouble: spool.state other than on/off
 *   7  events were dropped in the last minute (rates.dropped_1m)
 *   5  the upstream (retrying, throttled, send_error) has been failing
 *      longer than the threshold
 *   0  otherwise: delivering, idle, dry run, or failing for less
 *
 * The most severe problem wins, in that order. An older segopsd without
 * the issue 12 fields is judged on what it sends: a failing state of
 * unknown duration counts as failing too long (a monitor must hear of
 * it), and without rates.dropped_1m any drop since start counts.
 */
#include "report.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool is(const char *s, const char *what)
{
        return s && strcmp(s, what) == 0;
}

/* The states that need a person, not time. */
static const char *needs_operator(const char *state)
{
        if (is(state, "auth_error"))
                return "the upstream refuses the API key (auth_error): fix api_key_file";
        if (is(state, "tls_error"))
                return "TLS to the upstream fails (tls_error): check ca_file and the "
                       "upstream's certificate";
        if (is(state, "redirected"))
                return "the upstream answers with a redirect (redirected): fix api_url";
        if (is(state, "no_key"))
                return "segopsd has no API key yet (no_key): events are held until it is "
                       "given (see segopsd's log)";
        return NULL;
}

static bool failing_state(const char *state)
{
        return is(state, "retrying") || is(state, "throttled") || is(state, "send_error");
}

/* Both sides of 6: the upstream's state, or a refused pk_ mint. */
static bool judge_operator(json_t *stats, const char *state, struct ctl_health *h)
{
        json_t *session = json_object_get(stats, "session");
        const char *why = needs_operator(state);
        double status = 0;

        if (why) {
                snprintf(h->reason, sizeof(h->reason), "%s", why);
                return true;
        }
        if (is(json_string_value(json_object_get(session, "state")), "backing_off") &&
            ctl_json_num(session, "last_status", &status) &&
            (status == 400 || status == 401 || status == 403)) {
                snprintf(h->reason, sizeof(h->reason),
                         "the upstream refuses to mint a pk_ session (HTTP %.0f): %s", status,
                         status == 401   ? "the pk_ key is unknown or revoked"
                         : status == 403 ? "the user_id_sig is missing or wrong"
                                         : "check the identity sent with set-user");
                return true;
        }
        return false;
}

static bool judge_spool(json_t *stats, struct ctl_health *h)
{
        json_t *spool = json_object_get(stats, "spool");
        const char *state = json_string_value(json_object_get(spool, "state"));
        const char *err = json_string_value(json_object_get(spool, "last_error"));

        if (!state || is(state, "on") || is(state, "off"))
                return false;
        snprintf(h->reason, sizeof(h->reason),
                 "the spool is %s%s%s: events are kept in memory only",
                 is(state, "memory_only_after_error") ? "off after an error" : state,
                 err && *err ? ": " : "", err && *err ? err : "");
        return true;
}

static bool judge_drops(json_t *stats, struct ctl_health *h)
{
        json_t *dropped = json_object_get(stats, "dropped"), *v;
        const char *key, *worst = NULL;
        double n = 0, most = 0;
        char c[CTL_FMT_LEN];

        if (ctl_json_num(json_object_get(stats, "rates"), "dropped_1m", &n)) {
                if (n <= 0)
                        return false;
                snprintf(h->reason, sizeof(h->reason), "%s events dropped in the last minute",
                         ctl_fmt_count(ctl_count_of(n), c, sizeof(c)));
                goto reason;
        }
        /* An older segopsd: only totals since it started. */
        n = 0;
        json_object_foreach(dropped, key, v)
        {
                if (!json_is_integer(v) || json_integer_value(v) <= 0)
                        continue;
                n += (double)json_integer_value(v);
        }
        if (n <= 0)
                return false;
        snprintf(h->reason, sizeof(h->reason),
                 "%s events dropped since segopsd started (it does not report the last "
                 "minute)",
                 ctl_fmt_count(ctl_count_of(n), c, sizeof(c)));
reason:
        /* Name the main reason among the totals since start. */
        json_object_foreach(dropped, key, v)
        {
                if (json_is_integer(v) && (double)json_integer_value(v) > most) {
                        most = (double)json_integer_value(v);
                        worst = key;
                }
        }
        if (worst) {
                size_t o = strlen(h->reason);

                snprintf(h->reason + o, sizeof(h->reason) - o, "; most since start: %s", worst);
        }
        return true;
}

static bool judge_failing(json_t *up, const char *state, double max_failing_s, struct ctl_health *h)
{
        double failing = 0;
        char a[CTL_FMT_LEN], m[CTL_FMT_LEN];

        if (!failing_state(state))
                return false;
        if (!ctl_json_num(up, "failing_s", &failing)) {
                snprintf(h->reason, sizeof(h->reason),
                         "the upstream is failing (%s) for an unknown time (this segopsd does "
                         "not say how long)",
                         state);
                return true;
        }
        if (failing < max_failing_s)
                return false;
        snprintf(h->reason, sizeof(h->reason),
                 "the upstream has been failing (%s) for %s (over %s)", state,
                 ctl_fmt_age(failing, a, sizeof(a)), ctl_fmt_age(max_failing_s, m, sizeof(m)));
        return true;
}

/* "healthy: ..." in the words of the upstream summary. */
static void healthy(json_t *up, struct ctl_health *h)
{
        char summary[256];

        ctl_upstream_summary(up, summary, sizeof(summary));
        snprintf(h->reason, sizeof(h->reason), "healthy: upstream %s", summary);
}

void ctl_health_judge(json_t *stats, double max_failing_s, struct ctl_health *ret)
{
        json_t *up = json_object_get(stats, "upstream");
        const char *state = json_string_value(json_object_get(up, "state"));

        ret->reason[0] = '\0';
        if (judge_operator(stats, state, ret))
                ret->code = CTL_HEALTH_ACT;
        else if (judge_spool(stats, ret))
                ret->code = CTL_HEALTH_SPOOL;
        else if (judge_drops(stats, ret))
                ret->code = CTL_HEALTH_DROPPING;
        else if (judge_failing(up, state, max_failing_s, ret))
                ret->code = CTL_HEALTH_FAILING;
        else {
                ret->code = CTL_HEALTH_OK;
                healthy(up, ret);
        }
}
