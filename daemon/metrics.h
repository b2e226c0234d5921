/* metrics.h - the stats op's reply as Prometheus text (exposition
 * format 0.0.4), for the metrics op and node_exporter's textfile
 * collector: every counter and gauge of stats, named segopsd_…, with
 * HELP and TYPE lines, counters ending in _total, drop and reject
 * reasons as the label "reason", and the upstream's, the session's and
 * the spool's state as one 0/1 gauge per state.
 *
 * A pure function of the stats JSON, so the format is tested without a
 * daemon (tests/unit/test-metrics.c). Names follow stats' keys: the
 * path joined with '_', "_s" becomes "_seconds", "_ms" becomes
 * "_seconds" (the value divided by 1000); max_memory is
 * max_memory_bytes. */
#ifndef SEGOPSD_METRICS_H
#define SEGOPSD_METRICS_H

#include <jansson.h>

#include "proto.h"

/* Append the text for stats (the stats op's reply) to out. 0 or
 * -ENOMEM. A key missing from stats leaves its metric out. */
int metrics_text(const json_t *stats, struct proto_buf *out);

#endif
