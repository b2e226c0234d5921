/* ingest.c - the one path every message takes into the daemon.
 *
 * Both sockets call ingest_line() per message. It stamps the receipt
 * time and a random id source, lets proto validate and normalise, and
 * queues the encoded event; every outcome is counted so that
 * received = accepted + rejected. Rejections are logged at a limited
 * rate with an excerpt that cannot carry control characters.
 */
#include "ingest.h"

#include <errno.h>
#include <string.h>

#include "daemon.h"
#include "log.h"
#include "rng.h"

bool ingest_blank(const char *line, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
                        return false;
        return true;
}

static const char *source_name(enum ingest_source src)
{
        return src == INGEST_DGRAM ? "datagram" : "stream";
}

void ingest_reject(struct daemon *d, enum ingest_source src, struct proto_error *err)
{
        d->stats.received++;
        d->stats.rejected[err->reason]++;
        log_limited(LOG_WARNING, "rejected", "rejected a message on the %s socket: %s: %s",
                    source_name(src), proto_reason_name(err->reason), err->detail);
}

static void queue_event(struct daemon *d, const char *ev, size_t len)
{
        int r = q_push(&d->queue, ev, len);

        d->stats.accepted++;
        if (r > 0) {
                d->stats.dropped[DROP_MEMORY_FULL] += (uint64_t)r;
                log_limited(LOG_WARNING, "memory_full",
                            "max_memory reached: dropped the oldest "
                            "queued events (when_full = drop_oldest)");
        } else if (r < 0) {
                d->stats.dropped[DROP_MEMORY_FULL]++;
                log_limited(LOG_WARNING, "memory_full",
                            "max_memory reached: dropped a new event "
                            "(when_full = drop_newest)");
        }
}

void ingest_clock(struct daemon *d)
{
        d->rx_ms = daemon_now_ms();
}

enum ingest_outcome ingest_line(struct daemon *d, enum ingest_source src, const char *line,
                                size_t len, struct proto_msg *msg, struct proto_error *err)
{
        struct proto_buf *out = &d->scratch;
        uint8_t rnd[16];
        int r;

        rng_bytes16(rnd);
        proto_buf_reset(out);
        if (!d->rx_ms)
                ingest_clock(d);
        r = proto_parse(line, len, d->cfg.max_message_bytes, d->rx_ms, rnd, out, msg, err);
        if (r < 0) {
                if (r == -ENOMEM) {
                        err->reason = PROTO_E_NOMEM;
                        snprintf(err->detail, sizeof(err->detail), "out of memory");
                }
                ingest_reject(d, src, err);
                return INGEST_REJECTED;
        }
        if (msg->kind == PROTO_MSG_OP) {
                d->stats.ops++;
                return INGEST_OP;
        }
        d->stats.received++;
        queue_event(d, out->data, out->len);
        return INGEST_EVENT;
}
