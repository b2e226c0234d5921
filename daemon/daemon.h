/* daemon.h - one segopsd process: the modules main.c wires together.
 *
 * main.c owns the one struct daemon. The core modules (queue, batch,
 * batcher, flush, session, forward, ingest) are handed what they use at
 * init and never see this struct; the socket and control modules
 * (dgram.c, conn.c, control.c, reload.c) are handed the daemon and
 * reach each module only through its functions. What every module may
 * read or bump directly is the config (replaced in place by a reload)
 * and the counters. Everything runs on the one libuv loop thread,
 * except gzip compression, which runs on libuv's thread pool on
 * buffers no one else touches meanwhile.
 */
#ifndef SEGOPSD_DAEMON_H
#define SEGOPSD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "apikey.h"
#include "batcher.h"
#include "clients.h"
#include "config.h"
#include "forward.h"
#include "ingest.h"
#include "session.h"
#include "stats.h"
#include "status.h"

struct dgram;
struct conn_server;

struct daemon {
        uv_loop_t *loop;
        struct cfg cfg;
        struct apikey key;
        int64_t start_ms; /* wall clock, for uptime */
        bool stopping;

        struct stats stats;
        struct clients clients; /* per-process client_dropped */
        struct fwd fwd;
        struct session session; /* pk_ token; disabled for sk_ */
        struct spool *spool;    /* NULL: memory-only (no spool_dir) */
        struct batcher batcher; /* the queue and the batches */
        struct ingest ingest;
        struct dgram *dgram;
        struct conn_server *conns;
        struct status status; /* STATUS= and the rates of stats */
};

#endif
