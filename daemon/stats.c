/* stats.c - stable names for the drop reasons (the rejected reasons are
 * proto_reason_name()); these strings are part of the stats contract. */
#include "stats.h"

#include <stdio.h>

const char *stats_drop_name(enum stats_drop r)
{
        switch (r) {
        case DROP_MEMORY_FULL: return "memory_full";
        case DROP_UPSTREAM_REJECTED: return "upstream_rejected";
        case DROP_TOO_LARGE: return "too_large";
        case DROP_SHUTDOWN: return "shutdown";
        case DROP_SPOOL_FULL: return "spool_full";
        case DROP_SPOOL_CORRUPT: return "spool_corrupt";
        case DROP_REASON_COUNT: break;
        }
        return "unknown";
}

uint64_t stats_drops_text(const uint64_t dropped[DROP_REASON_COUNT], char *out, size_t outlen)
{
        uint64_t sum = 0;
        size_t o = 0;

        if (outlen)
                out[0] = '\0';
        for (int i = 0; i < DROP_REASON_COUNT; i++) {
                int n;

                if (!dropped[i])
                        continue;
                sum += dropped[i];
                if (o >= outlen)
                        continue;
                n = snprintf(out + o, outlen - o, "%s%llu %s", o ? ", " : "",
                             (unsigned long long)dropped[i], stats_drop_name(i));
                if (n > 0)
                        o += (size_t)n;
        }
        return sum;
}
