/* clock.h - the daemon's two clocks, in one place. Timers and loop
 * deadlines use uv_now(); these are for what the loop does not give. */
#ifndef SEGOPSD_CLOCK_H
#define SEGOPSD_CLOCK_H

#include <stdint.h>

/* Milliseconds of the realtime clock: event times, sent_at, uptime. */
int64_t clock_wall_ms(void);
/* Milliseconds of the monotonic clock: intervals off the loop (log
 * rate windows, segopsctl's deadlines). */
int64_t clock_mono_ms(void);

#endif
