/* metrics.c - stats as Prometheus text exposition (see metrics.h). One
 * table says which key of stats becomes which metric, of which type;
 * tests/integration/test_metrics.py checks that no numeric key of stats
 * is left out of it. */
#include "metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

enum metric_kind {
        M_COUNTER,
        M_GAUGE,
        M_REASONS, /* an object of reason: count, as counter{reason=…} */
        M_STATE,   /* a string, as gauge{state=…} 1 for it, 0 for the others */
        M_UP,      /* upstream.state, as 1 when ok, idle or dry_run */
};

struct metric {
        const char *path; /* in stats, dotted */
        const char *name; /* without "segopsd_" */
        enum metric_kind kind;
        const char *help;
        double scale;              /* 0: 1 */
        const char *const *states; /* M_STATE: every value, NULL-ended */
};

static const char *const upstream_states[] = {
        "idle",      "ok",         "dry_run",    "retrying", "throttled", "auth_error",
        "tls_error", "redirected", "send_error", "no_key",   NULL,
};
static const char *const session_states[] = {
        "disabled", "idle", "identifying", "minting", "ready", "backing_off", "no_identity", NULL,
};
static const char *const spool_states[] = { "off", "on", "memory_only_after_error", NULL };

#define C(p, n, h)                                                                                 \
        {                                                                                          \
                p, n, M_COUNTER, h, 0, NULL                                                        \
        }
#define G(p, n, h)                                                                                 \
        {                                                                                          \
                p, n, M_GAUGE, h, 0, NULL                                                          \
        }

/* clang-format off */
static const struct metric metrics[] = {
        G("uptime_s", "uptime_seconds", "Seconds since segopsd started."),
        C("received", "received_total", "Events and rejected lines received."),
        C("accepted", "accepted_total", "Events accepted."),
        { "rejected", "rejected_total", M_REASONS, "Messages rejected, by reason.", 0, NULL },
        { "dropped", "dropped_total", M_REASONS, "Accepted events dropped, by reason.", 0, NULL },
        C("client_dropped", "client_dropped_total", "Events clients reported they had to drop."),
        C("client_dropped_clamped", "client_dropped_clamped_total",
          "client_dropped reports over max_client_dropped_report."),
        C("clients_evicted", "clients_evicted_total", "Clients pushed out of the clients table."),
        G("queued_events", "queued_events", "Events held (memory, batches and spool backlog)."),
        G("queued_bytes", "queued_bytes", "Bytes in the memory account."),
        G("max_memory", "max_memory_bytes", "The memory bound (max_memory)."),
        G("in_flight", "in_flight", "Requests to the upstream in flight."),
        G("oldest_held_age_s", "oldest_held_age_seconds",
          "Age of the oldest event held, 0 when none is."),
        C("sent", "sent_total", "Events the upstream accepted."),
        C("duplicates", "duplicates_total", "Of those, duplicates the upstream had seen."),
        C("batches_sent", "batches_sent_total", "Batches the upstream accepted."),
        C("retries", "retries_total", "Resends of a batch."),
        C("splits", "splits_total", "Batches split after HTTP 413."),
        C("gzip_skipped", "gzip_skipped_total", "Batches sent uncompressed for lack of memory."),
        C("spooled", "spooled_total", "Events written to the spool."),
        C("ops", "ops_total", "Control ops carried out."),
        C("log_suppressed", "log_suppressed_total", "Log lines suppressed by the rate limit."),
        { "upstream.state", "upstream_up", M_UP,
          "1 when the upstream is delivering, idle or a dry run; 0 while failing.", 0, NULL },
        { "upstream.state", "upstream_state", M_STATE, "The upstream's state (1: current).", 0,
          upstream_states },
        G("upstream.since_s", "upstream_since_seconds", "Seconds in the current state."),
        G("upstream.failing_s", "upstream_failing_seconds",
          "Seconds since the first failure after the last success, 0 when not failing."),
        G("upstream.retry_in_s", "upstream_retry_in_seconds",
          "Seconds until the next attempt that waits, 0 when none."),
        G("upstream.paused_s", "upstream_paused_seconds", "Seconds left of a Retry-After pause."),
        G("upstream.failures", "upstream_failures", "Failed requests since the last success."),
        G("upstream.last_status", "upstream_last_status", "The last HTTP status, 0 before any."),
        G("rates.in_10s", "rates_in_10s", "Events/s accepted, over the last 10 s."),
        G("rates.out_10s", "rates_out_10s", "Events/s delivered, over the last 10 s."),
        G("rates.in_1m", "rates_in_1m", "Events/s accepted, over the last minute."),
        G("rates.out_1m", "rates_out_1m", "Events/s delivered, over the last minute."),
        G("rates.dropped_1m", "rates_dropped_1m", "Events dropped in the last minute."),
        G("rates.rejected_1m", "rates_rejected_1m", "Messages rejected in the last minute."),
        C("rates.marks_thinned", "rates_marks_thinned_total",
          "Times the arrival marks were thinned (RATES_MARKS reached)."),
        C("status.sent", "status_sent_total", "STATUS= lines sent to systemd."),
        C("status.deferred", "status_deferred_total",
          "STATUS= updates held back by status_interval."),
        { "session.state", "session_state", M_STATE, "The pk_ session's state (1: current).", 0,
          session_states },
        G("session.enabled", "session_enabled", "1 when a pk_ session is used."),
        C("session.mints", "session_mints_total", "Session tokens minted."),
        C("session.mint_failures", "session_mint_failures_total", "Mints that failed."),
        C("session.tokens_rejected", "session_tokens_rejected_total",
          "Tokens the upstream refused."),
        G("session.last_status", "session_last_status", "The last mint's HTTP status."),
        C("session.resets", "session_resets_total", "Session resets."),
        C("session.resets_coalesced", "session_resets_coalesced_total",
          "Session resets coalesced by session_reset_min_interval."),
        G("session.remint_pending", "session_remint_pending", "1 when a new token is due."),
        C("session.user_context_runs", "session_user_context_runs_total",
          "Runs of user_context_command."),
        G("session.token_age_s", "session_token_age_seconds", "Age of the token held."),
        G("session.token_expires_in_s", "session_token_expires_in_seconds",
          "Seconds until the token expires."),
        { "spool.state", "spool_state", M_STATE, "The spool's state (1: current).", 0,
          spool_states },
        G("spool.bytes", "spool_bytes", "Bytes in the spool's segments."),
        G("spool.segments", "spool_segments", "Segment files."),
        G("spool.acked_seq", "spool_acked_seq", "Every seq up to this one is done."),
        G("spool.next_seq", "spool_next_seq", "The seq of the next event written."),
        C("spool.replayed", "spool_replayed_total", "Events read back from an earlier run."),
        C("spool.corrupt_records", "spool_corrupt_records_total", "Damaged records skipped."),
        C("spool.corrupt_bytes", "spool_corrupt_bytes_total", "Damaged bytes skipped."),
        C("spool.write_errors", "spool_write_errors_total", "Writes that failed."),
        C("spool.recoveries", "spool_recoveries_total", "Recoveries after a write error."),
        C("spool.segments_deleted", "spool_segments_deleted_total", "Segments done and deleted."),
        C("spool.segments_dropped", "spool_segments_dropped_total",
          "Segments dropped (max_spool)."),
        G("spool.oldest_pending_age_s", "spool_oldest_pending_age_seconds",
          "Age of the oldest segment with pending events."),
        G("spool.pending_events", "spool_pending_events", "Events held with the spool on."),
        G("spool.disk_only_events", "spool_disk_only_events", "Events waiting on disk only."),
        C("ingest.datagrams", "ingest_datagrams_total", "Datagrams read."),
        C("ingest.datagrams_oversize", "ingest_datagrams_oversize_total",
          "Datagrams over max_datagram_bytes."),
        C("ingest.memfds", "ingest_memfds_total", "Datagrams passed as sealed memfds."),
        C("ingest.pauses", "ingest_pauses_total", "Times reading paused (memory 3/4 full)."),
        { "ingest.paused_ms", "ingest_paused_seconds_total", M_COUNTER,
          "Seconds reading was paused.", 0.001, NULL },
        C("ingest.connections", "ingest_connections_total", "Stream connections accepted."),
        C("ingest.connections_refused", "ingest_connections_refused_total",
          "Connections refused (max_connections)."),
        C("ingest.connections_refused_uid", "ingest_connections_refused_uid_total",
          "Connections refused (max_connections_per_uid)."),
        C("ingest.connections_slow_closed", "ingest_connections_slow_closed_total",
          "Connections closed with replies stuck (reply_timeout)."),
        C("ingest.connections_idle_closed", "ingest_connections_idle_closed_total",
          "Connections closed idle (idle_timeout)."),
        C("ingest.connections_reserved", "ingest_connections_reserved_total",
          "Connections admitted to reserved_connections."),
        C("ingest.connections_paused", "ingest_connections_paused_total",
          "Times reading a connection paused (max_reply_bytes)."),
        C("ingest.burst_limited", "ingest_burst_limited_total",
          "Wakeups cut at read_burst_lines or read_burst_bytes."),
        C("ingest.drains_capped", "ingest_drains_capped_total",
          "Flush drains that ended at the queue's length."),
        C("ingest.unread_at_stop", "ingest_unread_at_stop_total",
          "Datagrams the stop left unread."),
};
/* clang-format on */

static const json_t *lookup(const json_t *j, const char *path)
{
        char key[64];

        while (j && *path) {
                size_t n = strcspn(path, ".");

                if (n >= sizeof(key))
                        return NULL;
                memcpy(key, path, n);
                key[n] = '\0';
                j = json_object_get(j, key);
                path += n + (path[n] == '.');
        }
        return j;
}

static int put(struct proto_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int put(struct proto_buf *out, const char *fmt, ...)
{
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        if (proto_buf_reserve(out, (size_t)n + 1) < 0)
                return -ENOMEM;
        va_start(ap, fmt);
        vsnprintf(out->data + out->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        out->len += (size_t)n;
        return 0;
}

/* A label value, escaped as the format asks (\\, \", \n). */
static int put_label(struct proto_buf *out, const char *v)
{
        int r = 0;

        for (; *v && r == 0; v++)
                r = *v == '\\'   ? proto_buf_append_str(out, "\\\\")
                    : *v == '"'  ? proto_buf_append_str(out, "\\\"")
                    : *v == '\n' ? proto_buf_append_str(out, "\\n")
                                 : proto_buf_append(out, v, 1);
        return r;
}

static int put_value(struct proto_buf *out, const json_t *v, double scale)
{
        if (json_is_integer(v) && !scale)
                return put(out, " %" JSON_INTEGER_FORMAT "\n", json_integer_value(v));
        if (json_is_boolean(v))
                return put(out, " %d\n", json_is_true(v) ? 1 : 0);
        return put(out, " %.15g\n", json_number_value(v) * (scale ? scale : 1.0));
}

static int put_metric(struct proto_buf *out, const struct metric *m, const json_t *v)
{
        const char *type = m->kind == M_COUNTER || m->kind == M_REASONS ? "counter" : "gauge";
        const char *key, *s;
        const json_t *x;
        int r;

        if ((r = put(out, "# HELP segopsd_%s %s\n# TYPE segopsd_%s %s\n", m->name, m->help, m->name,
                     type)) < 0)
                return r;
        switch (m->kind) {
        case M_COUNTER:
        case M_GAUGE:
                if ((r = put(out, "segopsd_%s", m->name)) < 0)
                        return r;
                return put_value(out, v, m->scale);
        case M_REASONS:
                json_object_foreach((json_t *)v, key, x)
                {
                        if ((r = put(out, "segopsd_%s{reason=\"", m->name)) < 0 ||
                            (r = put_label(out, key)) < 0 ||
                            (r = proto_buf_append_str(out, "\"}")) < 0 ||
                            (r = put_value(out, x, 0)) < 0)
                                return r;
                }
                return 0;
        case M_STATE:
                s = json_string_value(v);
                for (const char *const *st = m->states; *st; st++)
                        if ((r = put(out, "segopsd_%s{state=\"%s\"} %d\n", m->name, *st,
                                     s && strcmp(s, *st) == 0)) < 0)
                                return r;
                return 0;
        case M_UP: {
                s = json_string_value(v);
                bool up = s && (strcmp(s, "ok") == 0 || strcmp(s, "idle") == 0 ||
                                strcmp(s, "dry_run") == 0);

                return put(out, "segopsd_%s %d\n", m->name, up ? 1 : 0);
        }
        }
        return -EINVAL;
}

int metrics_text(const json_t *stats, struct proto_buf *out)
{
        int r;

        for (size_t i = 0; i < sizeof(metrics) / sizeof(metrics[0]); i++) {
                const struct metric *m = &metrics[i];
                const json_t *v = lookup(stats, m->path);
                bool fits = m->kind == M_REASONS ? json_is_object(v)
                            : m->kind == M_STATE || m->kind == M_UP
                                    ? json_is_string(v)
                                    : json_is_number(v) || json_is_boolean(v);

                if (!fits)
                        continue;
                if ((r = put_metric(out, m, v)) < 0)
                        return r;
        }
        return 0;
}
