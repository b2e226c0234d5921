/* status.c - segopsctl status: one screen on how segopsd is doing.
 *
 * ctl_status_json() picks and derives, from a stats reply, what an
 * operator looks at first (in the spirit of systemctl status): the
 * upstream's state in words and for how long, rates in and out, what is
 * held and for how long, the drops and rejections that are not zero,
 * the spool, the pk_ session, the clients that reported drops, and the
 * health verdict. ctl_status_print() shows that object for people, so
 * --json and the screen always carry the same data. Fields an older
 * segopsd does not send are left out, not invented.
 */
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool is(const char *s, const char *what)
{
        return s && strcmp(s, what) == 0;
}

/* ", next try in 4s" when one is scheduled. */
static void next_try(json_t *up, char *buf, size_t len)
{
        double in = 0;
        char a[CTL_FMT_LEN];

        buf[0] = '\0';
        if (ctl_json_num(up, "retry_in_s", &in) && in > 0)
                snprintf(buf, len, ", next try in %s", ctl_fmt_age(in, a, sizeof(a)));
}

/* " for 2m13s" (failing_s for a failing state, since_s otherwise). */
static void how_long(json_t *up, bool failing, char *buf, size_t len)
{
        double s = 0, n = 0;
        char a[CTL_FMT_LEN], c[CTL_FMT_LEN];

        buf[0] = '\0';
        if (!(failing && ctl_json_num(up, "failing_s", &s) && s > 0) &&
            !ctl_json_num(up, "since_s", &s))
                return;
        if (failing && ctl_json_num(up, "failures", &n) && n > 0)
                snprintf(buf, len, " for %s (%s failed %s)", ctl_fmt_age(s, a, sizeof(a)),
                         ctl_fmt_count(ctl_count_of(n), c, sizeof(c)),
                         n == 1 ? "request" : "requests");
        else
                snprintf(buf, len, " for %s", ctl_fmt_age(s, a, sizeof(a)));
}

void ctl_upstream_summary(json_t *up, char *buf, size_t len)
{
        const char *state = json_string_value(json_object_get(up, "state"));
        char dur[96], next[64], a[CTL_FMT_LEN];
        double paused = 0;

        if (!state) {
                snprintf(buf, len, "state unknown");
                return;
        }
        how_long(up, !is(state, "ok") && !is(state, "idle") && !is(state, "dry_run"), dur,
                 sizeof(dur));
        next_try(up, next, sizeof(next));
        if (is(state, "ok"))
                snprintf(buf, len, "ok, delivering%s", dur);
        else if (is(state, "idle"))
                snprintf(buf, len, "idle, nothing sent yet");
        else if (is(state, "dry_run"))
                snprintf(buf, len, "dry run, batches are printed on segopsd's stdout");
        else if (is(state, "retrying"))
                snprintf(buf, len, "unreachable, retrying%s%s", dur, next);
        else if (is(state, "throttled") && ctl_json_num(up, "paused_s", &paused) && paused > 0)
                snprintf(buf, len, "paused by Retry-After for %s more (throttled%s)",
                         ctl_fmt_age(paused, a, sizeof(a)), dur);
        else if (is(state, "throttled"))
                snprintf(buf, len, "throttled (429/503 with Retry-After)%s%s", dur, next);
        else if (is(state, "auth_error"))
                snprintf(buf, len, "auth failing%s: the API key is refused%s", dur, next);
        else if (is(state, "tls_error"))
                snprintf(buf, len, "TLS failing%s: check ca_file and the certificate%s", dur, next);
        else if (is(state, "redirected"))
                snprintf(buf, len, "redirected%s: fix api_url%s", dur, next);
        else if (is(state, "no_key"))
                snprintf(buf, len, "no API key yet%s: events are held until it is given", dur);
        else if (is(state, "send_error"))
                snprintf(buf, len, "failing to send%s%s", dur, next);
        else
                snprintf(buf, len, "%s%s%s", state, dur, next);
}

/* Copy key from src to dst when it is there. */
static void take(json_t *dst, const char *dkey, json_t *src, const char *skey)
{
        json_t *v = json_object_get(src, skey);

        if (v)
                json_object_set(dst, dkey, v);
}

/* The members of obj whose integer value is not zero; NULL when none. */
static json_t *nonzero(json_t *obj)
{
        json_t *out = NULL, *v;
        const char *key;

        json_object_foreach(obj, key, v)
        {
                if (!json_is_integer(v) || json_integer_value(v) == 0)
                        continue;
                if (!out)
                        out = json_object();
                json_object_set(out, key, v);
        }
        return out;
}

static json_t *upstream_json(json_t *up)
{
        static const char *const keys[] = { "url",       "state",       "since_s",
                                            "failing_s", "retry_in_s",  "paused_s",
                                            "failures",  "last_status", "last_error" };
        json_t *j = json_object();
        char summary[256];

        for (size_t i = 0; j && i < sizeof(keys) / sizeof(keys[0]); i++)
                take(j, keys[i], up, keys[i]);
        ctl_upstream_summary(up, summary, sizeof(summary));
        json_object_set_new(j, "summary", json_string(summary));
        return j;
}

static json_t *events_json(json_t *stats)
{
        static const char *const totals[] = { "received", "accepted", "sent" };
        static const char *const rates[] = { "in_10s", "out_10s", "in_1m", "out_1m" };
        json_t *j = json_object(), *r = json_object_get(stats, "rates");

        for (size_t i = 0; j && i < sizeof(totals) / sizeof(totals[0]); i++)
                take(j, totals[i], stats, totals[i]);
        for (size_t i = 0; j && i < sizeof(rates) / sizeof(rates[0]); i++)
                take(j, rates[i], r, rates[i]);
        return j;
}

static json_t *held_json(json_t *stats)
{
        json_t *j = json_object(), *spool = json_object_get(stats, "spool");

        take(j, "events", stats, "queued_events");
        take(j, "memory_bytes", stats, "queued_bytes");
        take(j, "max_memory", stats, "max_memory");
        take(j, "in_flight", stats, "in_flight");
        take(j, "disk_only_events", spool, "disk_only_events");
        take(j, "disk_bytes", spool, "bytes");
        take(j, "oldest_age_s", stats, "oldest_held_age_s");
        return j;
}

static json_t *spool_json(json_t *spool)
{
        json_t *j;

        if (!json_is_object(spool))
                return NULL;
        j = json_object();
        take(j, "state", spool, "state");
        if (!is(json_string_value(json_object_get(spool, "state")), "on") ||
            json_integer_value(json_object_get(spool, "write_errors")) > 0)
                take(j, "last_error", spool, "last_error");
        take(j, "write_errors", spool, "write_errors");
        take(j, "corrupt_records", spool, "corrupt_records");
        return j;
}

/* Only for pk_ keys (session.enabled). */
static json_t *session_json(json_t *session)
{
        static const char *const keys[] = { "state",        "last_status",        "last_error",
                                            "token_age_s",  "token_expires_in_s", "identity_source",
                                            "mint_failures" };
        json_t *j;

        if (!json_is_true(json_object_get(session, "enabled")))
                return NULL;
        j = json_object();
        for (size_t i = 0; j && i < sizeof(keys) / sizeof(keys[0]); i++)
                take(j, keys[i], session, keys[i]);
        return j;
}

static json_t *clients_json(json_t *clients)
{
        json_t *a = NULL, *c;
        size_t i;

        json_array_foreach(clients, i, c)
        {
                if (json_integer_value(json_object_get(c, "dropped")) <= 0)
                        continue;
                if (!a)
                        a = json_array();
                json_array_append(a, c);
        }
        return a;
}

static void set_opt(json_t *j, const char *key, json_t *v)
{
        if (v)
                json_object_set_new(j, key, v);
}

json_t *ctl_status_json(json_t *stats)
{
        json_t *j = json_object(), *rates = json_object_get(stats, "rates");
        struct ctl_health h;

        if (!j)
                return NULL;
        take(j, "version", stats, "version");
        take(j, "uptime_s", stats, "uptime_s");
        json_object_set_new(j, "upstream", upstream_json(json_object_get(stats, "upstream")));
        json_object_set_new(j, "events", events_json(stats));
        json_object_set_new(j, "held", held_json(stats));
        set_opt(j, "dropped", nonzero(json_object_get(stats, "dropped")));
        take(j, "dropped_1m", rates, "dropped_1m");
        set_opt(j, "rejected", nonzero(json_object_get(stats, "rejected")));
        take(j, "rejected_1m", rates, "rejected_1m");
        if (json_integer_value(json_object_get(stats, "client_dropped")) > 0)
                take(j, "client_dropped", stats, "client_dropped");
        set_opt(j, "clients", clients_json(json_object_get(stats, "clients")));
        set_opt(j, "spool", spool_json(json_object_get(stats, "spool")));
        set_opt(j, "session", session_json(json_object_get(stats, "session")));
        ctl_health_judge(stats, CTL_HEALTH_DEFAULT_MAX_FAILING, &h);
        json_object_set_new(j, "health",
                            json_pack("{s:b s:i s:s}", "healthy", h.code == 0, "code", h.code,
                                      "reason", h.reason));
        return j;
}

/* ---- for people ---- */

static uint64_t count_of(json_t *obj, const char *key)
{
        json_int_t v = json_integer_value(json_object_get(obj, key));

        return v > 0 ? (uint64_t)v : 0;
}

/* "  Label: " with the labels aligned, as systemctl status does. */
static void label(FILE *f, const char *name)
{
        fprintf(f, "%11s: ", name);
}

static void print_head(json_t *s, FILE *f)
{
        const char *version = json_string_value(json_object_get(s, "version"));
        json_t *h = json_object_get(s, "health");
        double up = 0;
        char a[CTL_FMT_LEN];

        fprintf(f, "%s segopsd %s", json_is_true(json_object_get(h, "healthy")) ? "*" : "!",
                version ? version : "(unknown version)");
        if (ctl_json_num(s, "uptime_s", &up))
                fprintf(f, ", up %s", ctl_fmt_age(up, a, sizeof(a)));
        fputc('\n', f);
        label(f, "Health");
        fprintf(f, "%s (exit %d with segopsctl health)\n",
                json_string_value(json_object_get(h, "reason")),
                (int)json_integer_value(json_object_get(h, "code")));
}

static void print_upstream(json_t *up, FILE *f)
{
        const char *url = json_string_value(json_object_get(up, "url"));
        const char *err = json_string_value(json_object_get(up, "last_error"));
        double status = 0;
        char plain[32] = "";

        label(f, "Upstream");
        fprintf(f, "%s\n", url ? url : "(URL not reported by this segopsd)");
        label(f, "State");
        fprintf(f, "%s\n", json_string_value(json_object_get(up, "summary")));
        if (ctl_json_num(up, "last_status", &status) && status != 0)
                snprintf(plain, sizeof(plain), "HTTP %.0f", status);
        if (err && strcmp(err, plain) == 0)
                err = NULL; /* says no more than the status */
        if (status != 0 || (err && *err)) {
                label(f, "Last answer");
                fputs(plain, f);
                if (err && *err)
                        fprintf(f, "%s%s", status != 0 ? ", " : "", err);
                fputc('\n', f);
        }
}

static void print_events(json_t *ev, FILE *f)
{
        double in10, out10, in1m, out1m;
        char a[CTL_FMT_LEN], b[CTL_FMT_LEN], c[CTL_FMT_LEN], d[CTL_FMT_LEN];

        if (ctl_json_num(ev, "in_10s", &in10) && ctl_json_num(ev, "out_10s", &out10) &&
            ctl_json_num(ev, "in_1m", &in1m) && ctl_json_num(ev, "out_1m", &out1m)) {
                label(f, "Events/s");
                fprintf(f, "in %s (10s), %s (1m); out %s (10s), %s (1m)\n",
                        ctl_fmt_short(in10, a, sizeof(a)), ctl_fmt_short(in1m, b, sizeof(b)),
                        ctl_fmt_short(out10, c, sizeof(c)), ctl_fmt_short(out1m, d, sizeof(d)));
        }
        label(f, "Events");
        fprintf(f, "%s received, %s accepted, %s delivered since start\n",
                ctl_fmt_count(count_of(ev, "received"), a, sizeof(a)),
                ctl_fmt_count(count_of(ev, "accepted"), b, sizeof(b)),
                ctl_fmt_count(count_of(ev, "sent"), c, sizeof(c)));
}

static void print_held(json_t *held, FILE *f)
{
        char a[CTL_FMT_LEN], b[CTL_FMT_LEN], c[CTL_FMT_LEN];
        double age = 0;

        label(f, "Held");
        fprintf(f, "%s events, %s in memory", ctl_fmt_count(count_of(held, "events"), a, sizeof(a)),
                ctl_fmt_bytes(count_of(held, "memory_bytes"), b, sizeof(b)));
        if (count_of(held, "max_memory"))
                fprintf(f, " (of %s)", ctl_fmt_bytes(count_of(held, "max_memory"), c, sizeof(c)));
        if (json_object_get(held, "disk_bytes"))
                fprintf(f, ", %s on disk (%s events only there)",
                        ctl_fmt_bytes(count_of(held, "disk_bytes"), a, sizeof(a)),
                        ctl_fmt_count(count_of(held, "disk_only_events"), b, sizeof(b)));
        if (ctl_json_num(held, "oldest_age_s", &age) && count_of(held, "events"))
                fprintf(f, "; oldest %s", ctl_fmt_age(age, c, sizeof(c)));
        fputc('\n', f);
}

/* "memory_full 1,234, upstream_rejected 12" */
static void print_reasons(FILE *f, const char *name, json_t *reasons, json_t *s,
                          const char *last_minute)
{
        const char *key;
        json_t *v;
        bool first = true;
        char a[CTL_FMT_LEN];
        double n = 0;

        if (!reasons)
                return;
        label(f, name);
        json_object_foreach(reasons, key, v)
        {
                fprintf(f, "%s%s %s", first ? "" : ", ", key,
                        ctl_fmt_count(count_of(reasons, key), a, sizeof(a)));
                first = false;
        }
        if (ctl_json_num(s, last_minute, &n))
                fprintf(f, " (%s in the last minute)",
                        ctl_fmt_count(ctl_count_of(n), a, sizeof(a)));
        fputc('\n', f);
}

static void print_spool(json_t *spool, FILE *f)
{
        const char *state = json_string_value(json_object_get(spool, "state"));
        const char *err = json_string_value(json_object_get(spool, "last_error"));

        if (!state)
                return;
        label(f, "Spool");
        fprintf(f, "%s",
                is(state, "memory_only_after_error") ? "memory only after an error" : state);
        if (err && *err)
                fprintf(f, ": %s", err);
        if (count_of(spool, "write_errors"))
                fprintf(f, " (%" PRIu64 " write errors)", count_of(spool, "write_errors"));
        fputc('\n', f);
}

static void print_session(json_t *session, FILE *f)
{
        const char *state = json_string_value(json_object_get(session, "state"));
        const char *err = json_string_value(json_object_get(session, "last_error"));
        double left = 0;
        char a[CTL_FMT_LEN];

        if (!session)
                return;
        label(f, "Session");
        fprintf(f, "pk_ session %s", state ? state : "(state unknown)");
        if (ctl_json_num(session, "token_expires_in_s", &left))
                fprintf(f, ", token expires in %s", ctl_fmt_age(left, a, sizeof(a)));
        if (err && *err)
                fprintf(f, "; last error: %s", err);
        fputc('\n', f);
}

static void print_clients(json_t *s, FILE *f)
{
        json_t *clients = json_object_get(s, "clients"), *c;
        char a[CTL_FMT_LEN];
        size_t i;

        if (count_of(s, "client_dropped")) {
                label(f, "Client drops");
                fprintf(f, "%s events dropped by clients before reaching segopsd\n",
                        ctl_fmt_count(count_of(s, "client_dropped"), a, sizeof(a)));
        }
        json_array_foreach(clients, i, c)
        {
                const char *comm = json_string_value(json_object_get(c, "comm"));

                fprintf(f, "%13spid %" PRIu64 " (%s) dropped %s\n", "", count_of(c, "pid"),
                        comm && *comm ? comm : "?",
                        ctl_fmt_count(count_of(c, "dropped"), a, sizeof(a)));
        }
}

int ctl_status_print(json_t *s, FILE *f)
{
        print_head(s, f);
        print_upstream(json_object_get(s, "upstream"), f);
        print_events(json_object_get(s, "events"), f);
        print_held(json_object_get(s, "held"), f);
        print_reasons(f, "Dropped", json_object_get(s, "dropped"), s, "dropped_1m");
        print_reasons(f, "Rejected", json_object_get(s, "rejected"), s, "rejected_1m");
        print_spool(json_object_get(s, "spool"), f);
        print_session(json_object_get(s, "session"), f);
        print_clients(s, f);
        return ferror(f) ? -EIO : 0;
}
