/* ingest.h - what happens to one message, whichever socket it came on:
 * parse and validate (proto), count, queue the event, or hand back an
 * op for the caller to carry out. */
#ifndef SEGOPSD_INGEST_H
#define SEGOPSD_INGEST_H

#include <stdbool.h>
#include <stddef.h>

#include "clients.h"
#include "config.h"
#include "proto.h"
#include "stats.h"

struct batcher;

struct ingest {
        const struct cfg *cfg;
        struct stats *stats;
        struct batcher *batcher;  /* where accepted events go */
        struct proto_buf scratch; /* one event's encoding */
        int64_t rx_ms;            /* receipt time of the messages being read */
};

enum ingest_source { INGEST_DGRAM, INGEST_STREAM };

enum ingest_outcome {
        INGEST_EVENT,    /* accepted (and queued, or dropped: memory_full) */
        INGEST_OP,       /* an op: *msg says which */
        INGEST_REJECTED, /* counted and logged; *err says why */
};

void ingest_init(struct ingest *in, const struct cfg *cfg, struct stats *stats, struct batcher *b);
void ingest_free(struct ingest *in);

/* True when line holds nothing but whitespace (skipped, not counted). */
bool ingest_blank(const char *line, size_t len);

/* Read the clock for the messages about to be ingested: the sockets call
 * it once per read or burst, so a burst of thousands of datagrams costs
 * one clock read, and its events share a receipt time to the ms. */
void ingest_clock(struct ingest *in);

/* peer: the sender when the kernel says who it is (a datagram's
 * SCM_CREDENTIALS), else NULL; only a rejection's log line reads it. */
enum ingest_outcome ingest_line(struct ingest *in, enum ingest_source src,
                                const struct client_id *peer, const char *line, size_t len,
                                struct proto_msg *msg, struct proto_error *err);

/* Count and log a rejection found outside proto (oversize stream line,
 * op not allowed on this socket). The line names peer's pid (and uid)
 * when verified. */
void ingest_reject(struct ingest *in, enum ingest_source src, const struct client_id *peer,
                   const struct proto_error *err);

#endif
