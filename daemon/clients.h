/* clients.h - what sending processes report about themselves: events
 * they had to drop before reaching us (libshim's client_dropped op),
 * kept per pid in a small bounded table for stats. */
#ifndef SEGOPSD_CLIENTS_H
#define SEGOPSD_CLIENTS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define CLIENTS_MAX 64 /* processes remembered; the least recent goes */

/* Who sent a report, and on whose word: the kernel's (the socket's
 * credentials: SO_PEERCRED on the stream, SCM_CREDENTIALS on datagrams)
 * or the message's own "pid", which anyone can write. */
struct client_id {
        pid_t pid;     /* 0: unknown (or not visible from our pid namespace) */
        uid_t uid;     /* when verified */
        bool verified; /* pid and uid are the kernel's */
};

struct client_entry {
        struct client_id id; /* an entry per pid and kind of identity */
        char comm[17];       /* /proc/PID/comm when first seen */
        uint64_t dropped;
        uint64_t last_ms; /* for eviction */
};

struct clients {
        struct client_entry e[CLIENTS_MAX];
        uint64_t evicted; /* entries pushed out of the table */
};

/* a + b, at most INT64_MAX (what a JSON integer of stats holds): the
 * counts clients report are their word, and must not wrap. */
static inline uint64_t clients_count_add(uint64_t a, uint64_t b)
{
        return a > (uint64_t)INT64_MAX - b || b > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : a + b;
}

/* The table for stats: [{"pid","comm","dropped","identity"[,"uid"]}, ...],
 * identity "verified" (with the uid), "declared" or "unknown" (no pid).
 * NULL: ENOMEM. */
struct json_t;
struct json_t *clients_json(const struct clients *c);

/* id reported n dropped events at now_ms. */
void clients_dropped(struct clients *c, const struct client_id *id, uint64_t n, uint64_t now_ms);

#endif
