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

#include "batcher.h"
#include "clock.h"
#include "log.h"
#include "rng.h"

void ingest_init(struct ingest *in, const struct cfg *cfg, struct stats *stats, struct batcher *b)
{
        memset(in, 0, sizeof(*in));
        in->cfg = cfg;
        in->stats = stats;
        in->batcher = b;
}

void ingest_free(struct ingest *in)
{
        proto_buf_free(&in->scratch);
}

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

void ingest_reject(struct ingest *in, enum ingest_source src, const struct client_id *peer,
                   const struct proto_error *err)
{
        char from[64] = "";

        in->stats->received++;
        in->stats->rejected[err->reason]++;
        /* The kernel's word only (a message's own "pid" is anyone's). A
         * sender in another pid namespace has pid 0: its uid still says
         * something. */
        if (peer && peer->verified && peer->pid > 0)
                snprintf(from, sizeof(from), " from pid %ld (uid %lu)", (long)peer->pid,
                         (unsigned long)peer->uid);
        else if (peer && peer->verified)
                snprintf(from, sizeof(from), " from uid %lu (pid not visible)",
                         (unsigned long)peer->uid);
        log_limited(LOG_WARNING, "rejected", "rejected a message on the %s socket%s: %s: %s",
                    source_name(src), from, proto_reason_name(err->reason), err->detail);
}

/* The batcher counts every loss; here they are only told. */
static void queue_event(struct ingest *in, const char *ev, size_t len)
{
        size_t evicted;
        int r = batcher_push(in->batcher, ev, len, &evicted);

        in->stats->accepted++;
        if (evicted)
                log_limited(LOG_WARNING, "memory_full",
                            "max_memory reached: dropped the %zu oldest queued event%s "
                            "(when_full = drop_oldest)",
                            evicted, evicted == 1 ? "" : "s");
        if (r == -ENOMEM)
                log_limited(LOG_ERR, "queue_nomem", "out of memory: dropped a new event");
        else if (r == -ENOSPC)
                log_limited(LOG_WARNING, "spool_full",
                            "max_spool reached: dropped a new event (when_full = drop_newest, "
                            "or the spool holds nothing older to give up)");
        else if (r < 0)
                log_limited(LOG_WARNING, "memory_full", "max_memory reached: dropped a new event%s",
                            in->cfg->when_full == CFG_DROP_NEWEST
                                    ? " (when_full = drop_newest)"
                                    : ": batches in flight hold the memory");
}

void ingest_clock(struct ingest *in)
{
        in->rx_ms = clock_wall_ms();
}

enum ingest_outcome ingest_line(struct ingest *in, enum ingest_source src,
                                const struct client_id *peer, const char *line, size_t len,
                                struct proto_msg *msg, struct proto_error *err)
{
        struct proto_buf *out = &in->scratch;
        uint8_t rnd[16];
        int r;

        rng_bytes16(rnd);
        proto_buf_reset(out);
        if (!in->rx_ms)
                ingest_clock(in);
        r = proto_parse(line, len, in->cfg->max_message_bytes, in->rx_ms, rnd, out, msg, err);
        if (r < 0) {
                if (r == -ENOMEM) {
                        err->reason = PROTO_E_NOMEM;
                        snprintf(err->detail, sizeof(err->detail), "out of memory");
                }
                ingest_reject(in, src, peer, err);
                return INGEST_REJECTED;
        }
        if (msg->kind == PROTO_MSG_OP) {
                in->stats->ops++;
                return INGEST_OP;
        }
        in->stats->received++;
        queue_event(in, out->data, out->len);
        return INGEST_EVENT;
}
