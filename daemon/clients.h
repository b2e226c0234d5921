/* clients.h - what sending processes report about themselves: events
 * they had to drop before reaching us (libshim's client_dropped op),
 * kept per pid in a small bounded table for stats. */
#ifndef SEGOPSD_CLIENTS_H
#define SEGOPSD_CLIENTS_H

#include <stdint.h>
#include <sys/types.h>

#define CLIENTS_MAX 64 /* processes remembered; the least recent goes */

struct client_entry {
        pid_t pid;     /* 0: free slot */
        char comm[17]; /* /proc/PID/comm when first seen */
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

/* The table for stats: [{"pid","comm","dropped"}, ...]. NULL: ENOMEM. */
struct json_t;
struct json_t *clients_json(const struct clients *c);

/* pid (0 when unknown) reported n dropped events at now_ms. */
void clients_dropped(struct clients *c, pid_t pid, uint64_t n, uint64_t now_ms);

#endif
