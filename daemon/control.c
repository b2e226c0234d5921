/* control.c - the ops of SPEC section 2: what each does and the JSON
 * line it answers with. Replies are built with jansson (they are rare
 * and small) except the error reply, which is on the path of every
 * rejected line and is written directly. */
#include "control.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "spool.h"
#include "status.h"
#include "urlshow.h"

/* A report counts what its sender lost since its last one; a count
 * beyond max_client_dropped_report is a lie or a bug, and would bury
 * every honest figure in the totals. */
static void client_dropped(struct daemon *d, const struct proto_msg *msg,
                           const struct client_id *peer)
{
        const struct client_id declared = { .pid = msg->client_pid };
        const struct client_id *id = peer && peer->verified ? peer : &declared;
        uint64_t n = msg->count;

        if (n > d->cfg.max_client_dropped_report) {
                n = d->cfg.max_client_dropped_report;
                d->stats.client_dropped_clamped++;
                log_limited(LOG_WARNING, "client_dropped_clamped",
                            "%s process %d (uid %d) reports %llu dropped events in one "
                            "report; counting max_client_dropped_report (%llu)",
                            id->verified ? "verified" : "unverified", (int)id->pid,
                            id->verified ? (int)id->uid : -1, (unsigned long long)msg->count,
                            (unsigned long long)n);
        }
        d->stats.client_dropped = clients_count_add(d->stats.client_dropped, n);
        clients_dropped(&d->clients, id, n, (uint64_t)clock_wall_ms());
        log_limited(LOG_WARNING, "client_dropped",
                    "%s process %d reports %llu events it could not hand over to segopsd",
                    id->verified ? "verified" : "unverified", (int)id->pid, (unsigned long long)n);
}

bool control_quiet_op(struct daemon *d, const struct proto_msg *msg, const struct client_id *peer)
{
        switch (msg->op) {
        case PROTO_OP_SET_USER:
                session_set_user(&d->session, msg->user_id, msg->has_sig ? msg->user_id_sig : "");
                return true;
        case PROTO_OP_RESET_SESSION:
                session_reset(&d->session); /* no-op for sk_ keys */
                return true;
        case PROTO_OP_CLIENT_DROPPED:
                /* The socket's word over the message's. */
                client_dropped(d, msg, peer);
                return true;
        default: return false;
        }
}

static int dump_line(json_t *j, struct proto_buf *out)
{
        size_t n;
        int r;

        if (!j)
                return -ENOMEM;
        n = json_dumpb(j, NULL, 0, JSON_COMPACT);
        r = proto_buf_reserve(out, n + 1);
        if (r == 0) {
                json_dumpb(j, out->data + out->len, n, JSON_COMPACT);
                out->len += n;
                out->data[out->len++] = '\n';
        }
        json_decref(j);
        return r;
}

/* The spool's own numbers, and what the batcher holds of it. */
static json_t *spool_json(struct daemon *d)
{
        json_t *j;

        if (!d->spool)
                return json_pack("{s:s}", "state", "off");
        j = spool_stats(d->spool);
        if (j) {
                json_object_set_new(j, "pending_events",
                                    json_integer((json_int_t)batcher_held(&d->batcher)));
                json_object_set_new(j, "disk_only_events",
                                    json_integer((json_int_t)batcher_disk_only(&d->batcher)));
        }
        return j;
}

static json_t *stats_json(struct daemon *d)
{
        const struct stats *s = &d->stats;
        const struct upstream_health *up = batcher_upstream(&d->batcher);
        json_t *rej = json_object(), *drop = json_object();
        uint64_t rejected = 0;

        /* Every reason, 0 or not, as for dropped: a monitor can read
         * .rejected.oversize from the start. */
        for (int i = 1; i < PROTO_REASON_COUNT; i++) {
                json_object_set_new(rej, proto_reason_name(i),
                                    json_integer((json_int_t)s->rejected[i]));
                rejected += s->rejected[i];
        }
        for (int i = 0; i < DROP_REASON_COUNT; i++)
                json_object_set_new(drop, stats_drop_name(i),
                                    json_integer((json_int_t)s->dropped[i]));

        /* One key and its value per line. */
        /* clang-format off */
        return json_pack(
                "{s:b s:s s:I s:I s:I s:I s:o s:o s:I s:o s:I s:I s:I s:I s:I s:I s:I s:I s:I s:I s:I s:I"
                " s:{s:s s:I s:s}"
                " s:o s:o"
                " s:{s:I s:I s:I s:I s:I s:I s:I s:I s:I s:I s:I s:I}"
                " s:I s:I}",
                "ok", 1, "version", SEGOPS_VERSION,
                "uptime_s", (json_int_t)((clock_wall_ms() - d->start_ms) / 1000),
                "received", (json_int_t)s->received,
                "accepted", (json_int_t)s->accepted,
                "rejected_total", (json_int_t)rejected,
                "rejected", rej, "dropped", drop,
                "client_dropped", (json_int_t)s->client_dropped,
                "clients", clients_json(&d->clients),
                "clients_evicted", (json_int_t)d->clients.evicted,
                "queued_events", (json_int_t)batcher_held(&d->batcher),
                "queued_bytes", (json_int_t)batcher_memory(&d->batcher),
                "max_memory", (json_int_t)batcher_memory_limit(&d->batcher),
                "in_flight", (json_int_t)fwd_in_flight(&d->fwd),
                "sent", (json_int_t)s->sent,
                "duplicates", (json_int_t)s->duplicates,
                "batches_sent", (json_int_t)s->batches_sent,
                "retries", (json_int_t)s->retries,
                "splits", (json_int_t)s->splits,
                "gzip_skipped", (json_int_t)s->gzip_skipped,
                "spooled", (json_int_t)(d->spool ? spool_records(d->spool) : 0),
                "upstream", "state", upstream_state_name(up->state),
                "last_status", (json_int_t)up->last_status,
                "last_error", up->last_error,
                "session", session_stats(&d->session),
                "spool", spool_json(d),
                "ingest", "datagrams", (json_int_t)s->dgram_received,
                "datagrams_oversize", (json_int_t)s->dgram_truncated,
                "memfds", (json_int_t)s->dgram_memfd,
                "pauses", (json_int_t)s->dgram_pauses,
                "paused_ms", (json_int_t)s->dgram_paused_ms,
                "connections", (json_int_t)s->conn_accepted,
                "connections_refused", (json_int_t)s->conn_refused,
                "connections_refused_uid", (json_int_t)s->conn_refused_uid,
                "connections_slow_closed", (json_int_t)s->conn_slow_closed,
                "connections_idle_closed", (json_int_t)s->conn_idle_closed,
                "connections_reserved", (json_int_t)s->conn_reserved,
                "connections_paused", (json_int_t)s->conn_paused,
                "ops", (json_int_t)s->ops,
                "log_suppressed", (json_int_t)log_suppressed());
        /* clang-format on */
}

/* The datagram reader's per-wakeup and drain bounds (issue 10), in
 * "ingest" beside its other counters. */
static json_t *add_dgram_bounds(const struct daemon *d, json_t *j)
{
        const struct stats *s = &d->stats;
        json_t *in = j ? json_object_get(j, "ingest") : NULL;

        if (in) {
                json_object_set_new(in, "burst_limited",
                                    json_integer((json_int_t)s->dgram_burst_limited));
                json_object_set_new(in, "drains_capped",
                                    json_integer((json_int_t)s->dgram_drains_capped));
                json_object_set_new(in, "unread_at_stop",
                                    json_integer((json_int_t)s->dgram_unread_at_stop));
        }
        return j;
}

static double ms_to_s(uint64_t ms)
{
        return (double)ms / 1000.0;
}

/* Issue 12's additions, for status and health: how long the upstream's
 * state has lasted, how long delivery has been failing, what waits; the
 * recent rates; the oldest held event's age; STATUS= counters. */
static json_t *add_health(struct daemon *d, json_t *j)
{
        const struct upstream_health *up = batcher_upstream(&d->batcher);
        json_t *u = j ? json_object_get(j, "upstream") : NULL;
        uint64_t now = uv_now(d->loop);
        bool failing = upstream_state_failing(up->state) && up->failing;
        struct rates_sample s;
        struct rates_view v;
        char url[512];

        if (!u)
                return j;
        if (fwd_dry_run(&d->fwd))
                snprintf(url, sizeof(url), "stdout");
        else
                (void)urlshow_strip(d->cfg.api_url, url, sizeof(url));
        json_object_set_new(u, "url", json_string(url));
        json_object_set_new(u, "since_s", json_real(ms_to_s(now - up->since_ms)));
        json_object_set_new(u, "failing_s",
                            json_real(failing ? ms_to_s(now - up->failing_since_ms) : 0.0));
        json_object_set_new(u, "retry_in_s", json_real(ms_to_s(batcher_retry_in(&d->batcher))));
        json_object_set_new(u, "paused_s", json_real(ms_to_s(batcher_paused_for(&d->batcher))));
        json_object_set_new(u, "failures", json_integer((json_int_t)up->failures));
        status_sample(d, &s);
        rates_view(&d->status.rates, &s, &v);
        json_object_set_new(j, "rates",
                            json_pack("{s:f s:f s:f s:f s:I s:I s:I}", "in_10s", v.in_10s,
                                      "out_10s", v.out_10s, "in_1m", v.in_1m, "out_1m", v.out_1m,
                                      "dropped_1m", (json_int_t)v.dropped_1m, "rejected_1m",
                                      (json_int_t)v.rejected_1m, "marks_thinned",
                                      (json_int_t)d->status.rates.thinned));
        json_object_set_new(j, "oldest_held_age_s", json_real(status_oldest_age_s(d)));
        json_object_set_new(j, "status",
                            json_pack("{s:I s:I}", "sent", (json_int_t)d->status.sent, "deferred",
                                      (json_int_t)d->status.deferred));
        return j;
}

/* The whole stats reply. */
static json_t *full_stats(struct daemon *d)
{
        json_t *j = add_health(d, add_dgram_bounds(d, stats_json(d)));

        if (j)
                json_object_set_new(j, "client_dropped_clamped",
                                    json_integer((json_int_t)d->stats.client_dropped_clamped));
        return j;
}

/* The metrics op: stats as Prometheus text, in one JSON line. */
static int metrics_reply(struct daemon *d, struct proto_buf *out)
{
        struct proto_buf text = { 0 };
        json_t *j = full_stats(d);
        int r = j ? metrics_text(j, &text) : -ENOMEM;

        json_decref(j);
        if (r == 0)
                r = proto_buf_append(&text, "", 1); /* NUL */
        if (r == 0)
                r = dump_line(json_pack("{s:b s:s}", "ok", 1, "text", text.data), out);
        proto_buf_free(&text);
        return r;
}

int control_reply_sync(struct daemon *d, const struct proto_msg *msg, pid_t pid, uid_t uid,
                       struct proto_buf *out)
{
        const struct client_id peer = { .pid = pid, .uid = uid, .verified = uid != (uid_t)-1 };

        switch (msg->op) {
        case PROTO_OP_PING:
                return dump_line(json_pack("{s:b s:s}", "ok", 1, "version", SEGOPS_VERSION), out);
        case PROTO_OP_STATS: return dump_line(full_stats(d), out);
        case PROTO_OP_METRICS: return metrics_reply(d, out);
        default:
                if (control_quiet_op(d, msg, &peer))
                        return dump_line(json_pack("{s:b}", "ok", 1), out);
                break;
        }
        return -EINVAL;
}

int control_reply_error(struct proto_buf *out, const struct proto_error *err, uint64_t line)
{
        char tail[48];
        int r;

        snprintf(tail, sizeof(tail), ",\"line\":%llu}\n", (unsigned long long)line);
        if ((r = proto_buf_append_str(out, "{\"ok\":false,\"error\":\"")) < 0 ||
            (r = proto_buf_append_str(out, proto_reason_name(err->reason))) < 0 ||
            (r = proto_buf_append_str(out, "\",\"detail\":")) < 0 ||
            (r = proto_json_escape(out, err->detail, strlen(err->detail))) < 0 ||
            (r = proto_buf_append_str(out, tail)) < 0)
                return r;
        return 0;
}

static json_t *reasons_json(const struct flush_result *r)
{
        json_t *j = json_object();

        for (int i = 0; j && i < DROP_REASON_COUNT; i++)
                if (r->dropped_by[i])
                        json_object_set_new(j, stats_drop_name(i),
                                            json_integer((json_int_t)r->dropped_by[i]));
        return j;
}

int control_reply_flush(struct proto_buf *out, const struct flush_result *r)
{
        char error[256], reasons[160];
        json_t *j;

        if (r->result == 0 && r->dropped == 0)
                return dump_line(
                        json_pack("{s:b s:I}", "ok", 1, "flushed", (json_int_t)r->delivered), out);
        stats_drops_text(r->dropped_by, reasons, sizeof(reasons));
        if (r->result == 0)
                snprintf(error, sizeof(error), "%llu of the %llu events were dropped (%s)",
                         (unsigned long long)r->dropped, (unsigned long long)r->covered, reasons);
        else if (r->result == -ETIMEDOUT)
                snprintf(error, sizeof(error),
                         "timeout: the upstream has not accepted every event yet");
        else if (r->result == -ESHUTDOWN)
                snprintf(error, sizeof(error), "segopsd is stopping");
        else
                snprintf(error, sizeof(error), "%s", strerror(-r->result));
        j = json_pack("{s:b s:s s:I s:I s:I}", "ok", 0, "error", error, "flushed",
                      (json_int_t)r->delivered, "dropped", (json_int_t)r->dropped, "pending",
                      (json_int_t)r->pending);
        if (j && r->dropped)
                json_object_set_new(j, "dropped_by", reasons_json(r));
        return dump_line(j, out);
}
