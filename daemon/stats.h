/* stats.h - segopsd's counters: totals since start, by reason.
 *
 * One instance lives in struct daemon; every module bumps its own
 * counters and control.c renders them for the stats op. Counters relate
 * as SPEC section 2 says: received = accepted + sum(rejected);
 * accepted events end up sent, dropped (by reason) or still held.
 */
#ifndef SEGOPSD_STATS_H
#define SEGOPSD_STATS_H

#include <stdint.h>

#include "proto.h"

enum stats_drop {
        DROP_MEMORY_FULL,       /* max_memory reached (when_full policy) */
        DROP_UPSTREAM_REJECTED, /* 400 or another permanent 4xx */
        DROP_TOO_LARGE,         /* a single event still got 413 */
        DROP_SHUTDOWN,          /* left at stop_timeout, not on disk */
        DROP_SPOOL_FULL,        /* max_spool reached (when_full policy) */
        DROP_SPOOL_CORRUPT,     /* damage in the spool made them unreadable */
        DROP_REASON_COUNT
};

const char *stats_drop_name(enum stats_drop r);

/* "2 upstream_rejected, 1 memory_full": the non-zero counts of dropped
 * (indexed by enum stats_drop), "" when all are 0. Returns their sum. */
uint64_t stats_drops_text(const uint64_t dropped[DROP_REASON_COUNT], char *out, size_t outlen);

struct stats {
        uint64_t received; /* events and rejected lines */
        uint64_t ops;      /* ops carried out (not in received) */
        uint64_t accepted;
        uint64_t rejected[PROTO_REASON_COUNT];
        uint64_t dropped[DROP_REASON_COUNT];
        uint64_t client_dropped; /* reported by clients (libshim) */
        uint64_t sent;           /* events the upstream accepted */
        uint64_t duplicates;     /* of those, already seen upstream */
        uint64_t batches_sent;
        uint64_t requests;        /* HTTP requests finished */
        uint64_t retries;         /* resends of a batch */
        uint64_t splits;          /* batches split after a 413 */
        uint64_t gzip_skipped;    /* sent uncompressed: no room in max_memory */
        uint64_t dgram_received;  /* datagrams read */
        uint64_t dgram_truncated; /* datagrams over max_datagram_bytes */
        uint64_t dgram_memfd;     /* datagrams passed as sealed memfds */
        uint64_t dgram_pauses;    /* reading paused: memory 3/4 full */
        uint64_t dgram_paused_ms; /* total time paused */
        /* Wakeups cut at read_burst_lines/bytes; flush drains that
         * ended at the queue's length (no room for their marker), not
         * at their marker or an empty queue; datagrams the stop left
         * unread (stop_timeout). */
        uint64_t dgram_burst_limited;
        uint64_t dgram_drains_capped;
        uint64_t dgram_unread_at_stop;
        uint64_t conn_accepted;
        uint64_t conn_refused;     /* over max_connections */
        uint64_t conn_refused_uid; /* over max_connections_per_uid */
        uint64_t conn_reserved;    /* admitted to reserved_connections */
        uint64_t conn_paused;      /* reading paused: max_reply_bytes unread */
        uint64_t conn_slow_closed; /* replies stuck for reply_timeout */
        uint64_t conn_idle_closed; /* idle_timeout */
        uint64_t line_oversize;    /* stream lines over max_message_bytes */

        /* client_dropped reports over max_client_dropped_report */
        uint64_t client_dropped_clamped;
};

#endif
