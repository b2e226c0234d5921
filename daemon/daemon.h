/* daemon.h - the state of one segopsd process, shared by its modules.
 *
 * main.c owns the one struct daemon; each module owns its own part
 * (the queue, the batcher, the forwarder, the sockets) and is handed the
 * daemon so it can reach the counters and its neighbours. Everything
 * runs on the one libuv loop thread, except gzip compression, which runs
 * on libuv's thread pool on buffers no one else touches meanwhile.
 */
#ifndef SEGOPSD_DAEMON_H
#define SEGOPSD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "batcher.h"
#include "clients.h"
#include "config.h"
#include "forward.h"
#include "queue.h"
#include "session.h"
#include "stats.h"

struct dgram;
struct conn_server;

struct daemon {
        uv_loop_t *loop;
        struct cfg cfg;
        char *api_key; /* NULL in dry-run mode */
        char key_redacted[32];
        uint64_t key_gen; /* bumped when a reload replaces the key */
        int64_t start_ms;
        int64_t rx_ms; /* receipt time of the messages being read (ingest_clock) */
        bool stopping;

        struct stats stats;
        struct clients clients;              /* per-process client_dropped */
        struct proto_buf scratch;            /* ingest's encoding buffer */
        char user_id[PROTO_USER_ID_MAX + 1]; /* latest set_user */
        char user_id_sig[PROTO_USER_ID_SIG_MAX + 1];
        struct queue queue;
        struct batcher batcher;
        struct fwd fwd;
        struct session session; /* pk_ token; disabled for sk_ */
        struct dgram *dgram;
        struct conn_server *conns;
};

/* Milliseconds of the realtime clock (event times, sent_at). */
int64_t daemon_now_ms(void);

#endif
