/* stats.c - stable names for the drop reasons (the rejected reasons are
 * proto_reason_name()); these strings are part of the stats contract. */
#include "stats.h"

const char *stats_drop_name(enum stats_drop r)
{
        switch (r) {
        case DROP_MEMORY_FULL: return "memory_full";
        case DROP_UPSTREAM_REJECTED: return "upstream_rejected";
        case DROP_TOO_LARGE: return "too_large";
        case DROP_SHUTDOWN: return "shutdown";
        case DROP_REASON_COUNT: break;
        }
        return "unknown";
}
